"""``python -m ngac train ...``: the same entry as the ``ngac`` console script."""

import sys

from ngac.cli import main

sys.exit(main())
