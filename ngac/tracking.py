"""MLflow tracking: the run, its params and tags, and metrics that survive a flaky server.

The tracking URI is ``logger.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else MLflow's default
local store ``sqlite:///mlflow.db`` in the working directory (what a plain ``mlflow ui`` there
shows). A server that is down at start is an error before any environment starts
(:func:`ngac.validate.check_tracking_server`); one that drops mid-run only costs a warning:
metrics are buffered and sent when it is back, and are written to
``<out_dir>/metrics_buffer.jsonl`` if it never is (``ngac sync`` replays them).

A resumed run continues the same MLflow run. Metrics that reached MLflow after the checkpoint it
resumes from are not logged a second time: resume is exact, so the replayed updates would log
the same values at the same frames.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from .mlflow_utils import fail_fast as _fail_fast
from .mlflow_utils import quiet_store_errors, resolve_tracking_uri


def local_artifact_root(uri: str) -> str | None:
    """For a local sqlite store, artifacts go to ``mlruns/`` beside the database file (MLflow's own
    default is ``./mlruns`` of whatever folder the run starts in); None (MLflow's default) otherwise."""
    if uri.startswith("sqlite:///") and not uri.endswith(":memory:"):
        return (Path(uri[len("sqlite:///") :]).resolve().parent / "mlruns").as_uri()
    return None


def relative_to(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` when inside it (``ngac sync`` then finds it after the folder moves)."""
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path.resolve())


BUFFER = "metrics_buffer.jsonl"  # metric rows that never reached MLflow
UNSYNCED = "unsynced.json"  # the run's final status and artifacts that could not be sent


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class ResilientMLFlowLogger(MLFlowLogger):
    """Lightning's MLflow logger, batched and buffered.

    Rows are stamped when they are logged and sent together at most every ``flush_every_s``
    seconds, in one ``log_batch`` request (a sqlite write per update cost about 12 ms, 5% of an
    update). When the server is unreachable the rows stay buffered, a warning is shown once, and
    training continues; :meth:`flush_to_disk` keeps what never got through.
    """

    MAX_BATCH = 1000  # metrics per log_batch request (MLflow's limit)

    def __init__(self, *args: Any, buffer_path: Path | None = None, flush_every_s: float = 2.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: list[tuple[dict[str, float], int | None, int]] = []  # (metrics, step, timestamp ms)
        self._buffer_path = buffer_path
        self._flush_every_s = flush_every_s
        self._last_flush = time.monotonic()
        self._warned = False
        self.skip_through_step = -1  # rows at or below this step are already in MLflow (a resume)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        row = {k: float(v) for k, v in metrics.items()}
        if row and (step is None or step > self.skip_through_step):
            self._pending.append((row, step, int(time.time() * 1000)))
        if time.monotonic() - self._last_flush >= self._flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Send every buffered row now; on failure keep them and warn once."""
        from mlflow.entities import Metric

        self._last_flush = time.monotonic()
        try:
            # No HTTP retries: the buffered rows are the retry, at the next flush.
            with _fail_fast(), quiet_store_errors():
                while self._pending:
                    rows, metrics = 0, []
                    for m, step, ts in self._pending:
                        if metrics and len(metrics) + len(m) > self.MAX_BATCH:
                            break
                        metrics += [Metric(k, v, ts, step or 0) for k, v in m.items()]
                        rows += 1
                    self.experiment.log_batch(self.run_id, metrics=metrics)
                    del self._pending[:rows]
            self._warned = False
        except Exception as exc:  # noqa: BLE001
            if not self._warned:
                warnings.warn(
                    f"MLflow tracking failed ({type(exc).__name__}); buffering {len(self._pending)} metric rows, "
                    f"training continues",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self._warned = True

    def flush_to_disk(self) -> None:
        if self._pending and self._buffer_path is not None:
            with open(self._buffer_path, "a") as fh:
                for m, step, ts in self._pending:
                    fh.write(json.dumps({"step": step, "timestamp": ts, "metrics": m}) + "\n")
            warnings.warn(
                f"{len(self._pending)} metric rows could not reach MLflow; kept in {self._buffer_path}", stacklevel=2
            )
            self._pending.clear()

    def finalize(self, status: str = "success") -> None:
        # The run's final status is set by RunLogger.finish (FINISHED, KILLED or FAILED).
        pass


class RunLogger:
    """One MLflow run: created, or re-opened for a resume, after every input check has passed."""

    def __init__(self, cfg: DictConfig, *, run_id: str | None, tags: dict[str, str], out_dir: Path) -> None:
        self.tracking_uri = resolve_tracking_uri(cfg.logger.tracking_uri)
        run_name = cfg.logger.run_name or f"{tags['algo']}-{cfg.env.id}-s{cfg.seed}"
        self.lightning_logger = ResilientMLFlowLogger(
            experiment_name=cfg.logger.experiment_name,
            run_name=run_name,
            tracking_uri=self.tracking_uri,
            tags=tags,
            run_id=run_id,
            buffer_path=out_dir / BUFFER,
            artifact_location=local_artifact_root(self.tracking_uri),
        )
        self.out_dir, self.buffer_path = out_dir, out_dir / BUFFER
        self.unsynced: dict[str, Any] = {"status": None, "artifacts": []}
        self.client = self.lightning_logger.experiment
        self.run_id: str = self.lightning_logger.run_id
        self.experiment_id: str = self.lightning_logger.experiment_id
        if run_id is not None:
            # Re-open a resumed run (MLflow marks it FINISHED/KILLED/FAILED when it ended).
            self.client.update_run(self.run_id, status="RUNNING")
            for k, v in tags.items():
                self.client.set_tag(self.run_id, k, v)
            history = self.client.get_metric_history(self.run_id, "charts/frames")
            self.lightning_logger.skip_through_step = max((m.step for m in history), default=-1)

    def log_config(self, cfg: DictConfig) -> None:
        container = OmegaConf.to_container(cfg, resolve=True)
        params = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in flatten(container).items()}
        self.lightning_logger.log_hyperparams(params)
        self.client.log_text(self.run_id, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")

    def log_artifact(self, path: Path, folder: str) -> bool:
        try:
            with _fail_fast(retries=1, timeout=60), quiet_store_errors():
                self.client.log_artifact(self.run_id, str(path), folder)
            return True
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"could not upload {path} to MLflow ({type(exc).__name__}); it stays on disk", stacklevel=2)
            self.unsynced["artifacts"].append([relative_to(Path(path), self.out_dir), folder])
            return False

    def finish(self, status: str) -> None:
        """``status`` is FINISHED, KILLED or FAILED; no run is left RUNNING if MLflow is up.

        If it is not, what could not be sent is recorded in ``<out_dir>/unsynced.json`` (with the
        metric rows in ``metrics_buffer.jsonl``) and ``ngac sync <out_dir>`` sends it later.
        """
        self.lightning_logger.flush()  # one last try at what is buffered
        self.lightning_logger.flush_to_disk()
        try:
            with _fail_fast(), quiet_store_errors():
                self.client.set_terminated(self.run_id, status=status)
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"could not mark MLflow run {self.run_id} {status} ({type(exc).__name__})", stacklevel=2)
            self.unsynced["status"] = status
        if self.unsynced["status"] or self.unsynced["artifacts"] or self.buffer_path.exists():
            record = {"tracking_uri": self.tracking_uri, "run_id": self.run_id, **self.unsynced}
            (self.out_dir / UNSYNCED).write_text(json.dumps(record, indent=1))
            print(f"MLflow was unreachable at the end of the run: `ngac sync {self.out_dir}` sends what is missing")
