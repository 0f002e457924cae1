"""Fixtures for the app-layer tests: tiny run configs; a local sqlite store, a real ``mlflow server``, REST helpers.

The server runs as a subprocess in its own process group (``mlflow server`` forks uvicorn), with
one worker and MLflow's job runner off (it forks seven more consumers), and is always stopped at
the end: SIGTERM to the group, wait, then SIGKILL.
"""

from __future__ import annotations

import pytest

from tests.ngac.run_utils import make_cfg
from tests.ngac.tracking_utils import start_server


@pytest.fixture
def cfg_factory(tmp_path):
    """``cfg_factory(*overrides)``: the real config, tiny budgets, a tmp MLflow store and out_dir."""
    return lambda *ov: make_cfg(tmp_path, *ov)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("mlflow_server"))
    try:
        yield server
    finally:
        server.stop()
