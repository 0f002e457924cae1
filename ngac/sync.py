"""``ngac sync OUT_DIR``: send what a run could not send because MLflow was down when it ended.

A run whose tracking server was unreachable at the end leaves, in its output folder,
``metrics_buffer.jsonl`` (metric rows, with their steps and original timestamps) and
``unsynced.json`` (tracking URI, run id, the final status, artifacts not uploaded). This replays
the rows with ``log_batch``, uploads the artifacts, sets the final status, and renames both
files with a ``.synced`` suffix so a second sync sends nothing twice.

It never blocks for good: a line a crash cut short (or any line that is not a row) is skipped
and counted; an artifact path is read relative to the run folder (so a moved folder still
syncs) and one that no longer exists is reported while the status is still set; a corrupt
record, an unknown run id or a store error is one :class:`~ngac.validate.ConfigError` line. A
sync that stops half-way can be run again: the files are renamed only once everything is sent,
and MLflow keeps one copy of a metric row sent twice with the same step, time and value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .mlflow_utils import fail_fast, quiet_store_errors
from .tracking import BUFFER, UNSYNCED
from .validate import ConfigError, check_tracking_server

MAX_BATCH = 1000


@dataclass
class SyncResult:
    run_id: str
    rows: int = 0
    skipped_lines: int = 0
    artifacts: int = 0
    missing: list[str] = field(default_factory=list)
    status: str | None = None


def _record(path: Path) -> dict[str, Any]:
    where = f"{str(path)!r}"
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{where} is unreadable or corrupt ({type(exc).__name__}); it cannot be synced") from None
    ok = (
        isinstance(record, dict)
        and isinstance(record.get("run_id"), str)
        and isinstance(record.get("artifacts", []), list)
        and record.get("status") in (None, "FINISHED", "KILLED", "FAILED")
    )
    if not ok:
        raise ConfigError(f"{where} is not an ngac sync record (run_id, status, artifacts); it cannot be synced")
    return record


def read_rows(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The buffer's metric rows, and how many lines were skipped (cut short by a crash, or not rows)."""
    rows, skipped = [], 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not (isinstance(row, dict) and isinstance(row.get("metrics"), dict) and "timestamp" in row):
                raise ValueError("not a metric row")
        except ValueError:
            skipped += 1
            continue
        rows.append(row)
    return rows, skipped


def artifact_path(out: Path, recorded: str) -> Path:
    """``recorded`` as written (relative to the run folder, or absolute from older runs); an absolute
    path that no longer exists is looked up under the run folder too (the folder was moved)."""
    p = Path(recorded)
    if not p.is_absolute():
        return out / p
    if p.exists():
        return p
    for i in range(1, len(p.parts)):  # the longest tail of the old path that exists in the moved folder
        candidate = out.joinpath(*p.parts[i:])
        if candidate.exists():
            return candidate
    return p


def sync(out_dir: str | Path, tracking_uri: str | None = None) -> SyncResult:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    out = Path(out_dir)
    record_path, buffer_path = out / UNSYNCED, out / BUFFER
    if not record_path.is_file():
        raise ConfigError(f"out_dir={str(out)!r} has no {UNSYNCED}: nothing to sync (the run reached MLflow)")
    record = _record(record_path)
    uri = tracking_uri or record.get("tracking_uri")
    if not isinstance(uri, str) or not uri:
        raise ConfigError(f"{str(record_path)!r} names no tracking store; pass --tracking-uri URI")
    check_tracking_server(uri)
    client, result = MlflowClient(uri), SyncResult(run_id=record["run_id"], status=record.get("status"))
    try:
        with fail_fast(retries=3, timeout=30), quiet_store_errors():
            try:
                client.get_run(result.run_id)
            except Exception:  # noqa: BLE001 - MLflow's own exception for an unknown run
                raise ConfigError(
                    f"run {result.run_id} of {str(record_path)!r} is not in {uri}; pass --tracking-uri for the store "
                    "the run was logged to"
                ) from None
            if buffer_path.is_file():
                rows, result.skipped_lines = read_rows(buffer_path)
                metrics = [
                    Metric(k, float(v), int(row["timestamp"]), int(row.get("step") or 0))
                    for row in rows
                    for k, v in row["metrics"].items()
                ]
                for i in range(0, len(metrics), MAX_BATCH):
                    client.log_batch(result.run_id, metrics=metrics[i : i + MAX_BATCH])
                result.rows = len(rows)
            for recorded, folder in record.get("artifacts", []):
                path = artifact_path(out, recorded)
                if not path.exists():
                    result.missing.append(str(recorded))
                    continue
                client.log_artifact(result.run_id, str(path), folder)
                result.artifacts += 1
            if result.status:
                client.set_terminated(result.run_id, status=result.status)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - the store refused: one line, and the files stay for a retry
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"the store {uri} refused the sync ({reason}); nothing is marked synced, run it again"
        ) from None
    if buffer_path.is_file():
        buffer_path.rename(buffer_path.with_name(BUFFER + ".synced"))
    record_path.rename(record_path.with_name(UNSYNCED + ".synced"))
    return result
