"""Fixtures for the environment-layer tests."""

from __future__ import annotations

import pytest

from tests.envs.envtest_utils import ENV_CONFIG_FILES


@pytest.fixture(params=[p.stem for p in ENV_CONFIG_FILES], ids=[p.stem for p in ENV_CONFIG_FILES])
def env_name(request):
    return request.param
