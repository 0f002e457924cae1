"""A store that refuses writes mid-run costs one warning, not MLflow's tracebacks; the rows stay buffered."""

from __future__ import annotations

import logging
import warnings

import mlflow

from ngac.tracking import ResilientMLFlowLogger


def test_a_refusing_store_is_one_warning_and_no_traceback(tmp_path, capfd):
    logger = ResilientMLFlowLogger(
        experiment_name="ngac", tracking_uri=f"sqlite:///{tmp_path}/m.db", artifact_location=(tmp_path / "a").as_uri()
    )
    client = logger.experiment
    capfd.readouterr()

    def refuse(*args, **kwargs):
        # What MLflow's SQL store does on "database is locked": log the whole traceback, then raise.
        try:
            raise RuntimeError("database is locked")
        except RuntimeError:
            logging.getLogger("mlflow.store.db.utils").exception("SQLAlchemy database error. The following ...")
            raise mlflow.exceptions.MlflowException("(sqlite3.OperationalError) database is locked") from None

    real = client.log_batch
    client.log_batch = refuse
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in (1, 2, 3):
            logger.log_metrics({"charts/frames": float(step)}, step=step)
            logger.flush()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "SQLAlchemy" not in err, err
    assert [str(w.message) for w in caught if "MLflow tracking failed" in str(w.message)] == [
        "MLflow tracking failed (MlflowException); buffering 1 metric rows, training continues"
    ]
    client.log_batch = real
    logger.flush()  # the store is back: every buffered row goes through
    assert [m.step for m in client.get_metric_history(logger.run_id, "charts/frames")] == [1, 2, 3]
    assert logging.getLogger("mlflow.store.db.utils").level < logging.CRITICAL  # put back after each attempt
