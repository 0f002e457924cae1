"""``python -m ngac.compare``: the same as ``ngac compare``."""

import sys

from .command import main

sys.exit(main(sys.argv[1:]))
