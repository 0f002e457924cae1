"""Links into the MLflow UI that open the runs table, not the GenAI home page MLflow 3 opens on.

MLflow 3.17's UI starts in "GenAI" mode, and the experiment tag
``mlflow.experimentKind=custom_model_development`` does not change that; the route
``#/experiments/<id>/runs`` opens the experiment's "Training runs" table directly, and
``#/experiments/<id>/runs/<run id>`` a run's page. A local store (sqlite or a folder) has no
server: the links then point at ``mlflow ui``'s default address, with the command that serves it.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from urllib.parse import urlparse

LOCAL_UI = "http://127.0.0.1:5000"  # `mlflow ui`'s default host and port
NON_PATH_STORES = ("databricks", "uc")  # tracking URIs without a scheme that MLflow does not read as a folder


def _local_store(uri: str) -> str | None:
    """The absolute form of a local store's URI (so the command works from any folder); None if not local."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else parsed.path
        return uri if path in ("", ":memory:") else f"sqlite:///{Path(path).resolve()}"
    if parsed.scheme == "file":
        return Path(parsed.path).resolve().as_uri()
    if parsed.scheme == "" and not uri.startswith(NON_PATH_STORES):  # a plain path
        return Path(uri).resolve().as_uri()
    return None


def ui_links(tracking_uri: str, experiment_id: str, run_id: str | None = None) -> list[str]:
    """Lines to print when a run or a sweep ends: the experiment's training-runs table, and the run's page.

    For a tracking server (``http(s)://...``) the links are on that server. For a local store the
    first line says to run ``mlflow ui --backend-store-uri <store>`` and gives
    ``http://127.0.0.1:5000/#/experiments/<id>/runs``. Other stores (e.g. ``databricks``) get no links.
    """
    parsed = urlparse(tracking_uri)
    if parsed.scheme in ("http", "https"):
        base, serve = tracking_uri.rstrip("/"), ""
    elif (store := _local_store(tracking_uri)) is not None:
        base, serve = LOCAL_UI, f"run `mlflow ui --backend-store-uri {shlex.quote(store)}`, then open "
    else:
        return []
    lines = [f"MLflow training runs: {serve}{base}/#/experiments/{experiment_id}/runs"]
    if run_id:
        lines.append(f"MLflow run: {base}/#/experiments/{experiment_id}/runs/{run_id}")
    return lines
