"""``ngac sync OUT_DIR``: send what a run could not send because MLflow was down when it ended.

A run whose tracking server was unreachable at the end leaves, in its output folder,
``metrics_buffer.jsonl`` (metric rows, with their steps and original timestamps) and
``unsynced.json`` (tracking URI, run id, the final status, artifacts not uploaded). This replays
the rows with ``log_batch``, uploads the artifacts, sets the final status, and renames both
files with a ``.synced`` suffix so a second sync sends nothing twice.
"""

from __future__ import annotations

import json
from pathlib import Path

from .mlflow_utils import fail_fast
from .tracking import BUFFER, UNSYNCED
from .validate import ConfigError, check_tracking_server

MAX_BATCH = 1000


def sync(out_dir: str | Path, tracking_uri: str | None = None) -> dict[str, int | str | None]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    out = Path(out_dir)
    record_path, buffer_path = out / UNSYNCED, out / BUFFER
    if not record_path.is_file():
        raise ConfigError(f"out_dir={str(out)!r} has no {UNSYNCED}: nothing to sync (the run reached MLflow)")
    record = json.loads(record_path.read_text())
    uri = tracking_uri or record["tracking_uri"]
    check_tracking_server(uri)
    client, run_id = MlflowClient(uri), record["run_id"]
    rows = 0
    with fail_fast(retries=3, timeout=30):
        if buffer_path.is_file():
            metrics = []
            for line in buffer_path.read_text().splitlines():
                row = json.loads(line)
                metrics += [Metric(k, v, row["timestamp"], row["step"] or 0) for k, v in row["metrics"].items()]
                rows += 1
            for i in range(0, len(metrics), MAX_BATCH):
                client.log_batch(run_id, metrics=metrics[i : i + MAX_BATCH])
            buffer_path.rename(buffer_path.with_name(BUFFER + ".synced"))
        for path, folder in record["artifacts"]:
            client.log_artifact(run_id, path, folder)
        if record["status"]:
            client.set_terminated(run_id, status=record["status"])
    record_path.rename(record_path.with_name(UNSYNCED + ".synced"))
    return {"run_id": run_id, "rows": rows, "artifacts": len(record["artifacts"]), "status": record["status"]}
