"""Fixtures for the tracking tests: a local sqlite store, a real ``mlflow server``, REST helpers.

The server runs as a subprocess in its own process group (``mlflow server`` forks uvicorn), with
one worker and MLflow's job runner off (it forks seven more consumers), and is always stopped at
the end: SIGTERM to the group, wait, then SIGKILL.
"""

from __future__ import annotations

import pytest
from tests.ngac.tracking_utils import start_server


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("mlflow_server"))
    try:
        yield server
    finally:
        server.stop()
