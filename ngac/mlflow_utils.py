"""Small MLflow helpers shared by training and ``ngac compare`` (no Lightning import here)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
#: MLflow's SQL store logs every database error with its whole traceback at ERROR level before
#: raising it; ngac catches the error and says it in one line
STORE_ERROR_LOGGERS = ("mlflow.store.db.utils",)


def resolve_tracking_uri(configured: str | None) -> str:
    """``configured``, else ``$MLFLOW_TRACKING_URI``, else MLflow's default local store."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


@contextmanager
def fail_fast(retries: int = 0, timeout: int = 5) -> Iterator[None]:
    """MLflow retries each HTTP call for minutes by default; probes and training must not wait on that."""
    keys = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries), "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout)}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def sqlite_init_lock(uri: str) -> Iterator[None]:
    """Serialise the first touch of a local sqlite store: two runs started at once in a fresh folder
    would otherwise race through MLflow's schema migrations and one of them fail."""
    if not uri.startswith("sqlite:///") or uri.endswith(":memory:"):
        yield
        return
    import fcntl
    from pathlib import Path

    lock = Path(uri[len("sqlite:///") :] + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def quiet_store_errors() -> Iterator[None]:
    """Silence MLflow's own traceback logging of a store error that the caller reports in one line."""
    import logging

    loggers = [logging.getLogger(name) for name in STORE_ERROR_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
