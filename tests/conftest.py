"""Suite-wide guards: tests write only to temporary folders, never into the checkout or the cwd."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

REPO = Path(__file__).resolve().parents[1]

# Hypothesis keeps its example database and caches in ./.hypothesis by default: keep them in tmp.
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="ngac-hypothesis-"))
settings.register_profile("ngac", database=None)
settings.load_profile("ngac")


def _untracked(root: Path) -> set[str]:
    """Files git does not track under ``root``, ignored ones included (``mlflow.db``, ``mlruns/``...)."""
    out = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
        cwd=root, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if out.returncode != 0:
        return set()
    return {line[3:] for line in out.stdout.splitlines() if line[:2] in ("??", "!!")}


def _noise(path: str) -> bool:
    parts = Path(path).parts
    return (
        "__pycache__" in parts
        or parts[0] in (".venv", ".git", ".ruff_cache")
        or path.endswith(".egg-info")
        or ".egg-info/" in path
    )


@pytest.fixture(scope="session", autouse=True)
def nothing_written_into_the_checkout():
    """Fails the session if the suite left new files in the repository or the working directory."""
    cwd = Path(os.getcwd())
    before_repo = {p for p in _untracked(REPO) if not _noise(p)}
    before_cwd = set(os.listdir(cwd))
    yield
    new = sorted(p for p in _untracked(REPO) if not _noise(p))
    new = [p for p in new if p not in before_repo]
    new_cwd = sorted(set(os.listdir(cwd)) - before_cwd)
    assert not new and not new_cwd, f"the test suite wrote into the checkout or cwd: {new or new_cwd}"
