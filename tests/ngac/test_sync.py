"""`ngac sync` is tolerant and idempotent: a cut-short buffer line, a moved folder, a missing
artifact, a corrupt record, an unknown run or a refusing store never block it for good."""

from __future__ import annotations

import json
import shutil

import mlflow
import pytest

from ngac.cli import main
from ngac.sync import sync
from ngac.validate import ConfigError


@pytest.fixture
def unsynced(tmp_path):
    """A run left RUNNING by a store that was down at its end, with its out_dir as the run wrote it."""
    uri = f"sqlite:///{tmp_path}/m.db"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("ngac", artifact_location=(tmp_path / "mlruns").as_uri())
    run_id = client.create_run(experiment).info.run_id
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    rows = [{"step": s, "timestamp": 1000 + s, "metrics": {"charts/frames": float(s)}} for s in (32, 64)]
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 96, "timest'  # a crash mid-write
    (out / "metrics_buffer.jsonl").write_text(text)
    record = {
        "tracking_uri": uri,
        "run_id": run_id,
        "status": "KILLED",
        "artifacts": [["checkpoints/last.ckpt", "checkpoints"], ["gone.mp4", "videos"]],
    }
    (out / "unsynced.json").write_text(json.dumps(record))
    return client, run_id, out


def test_a_cut_short_line_and_a_missing_artifact_are_reported_and_the_status_is_set(unsynced, capsys, tmp_path):
    client, run_id, out = unsynced
    moved = tmp_path / "moved"
    shutil.move(out, moved)  # artifacts are found relative to the run folder
    assert main(["sync", str(moved)]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 unreadable line" in captured.err and "artifact gone.mp4 no longer exists" in captured.err
    assert "2 metric rows, 1 artifacts sent; status KILLED" in captured.out
    assert client.get_run(run_id).info.status == "KILLED"
    assert sorted(m.step for m in client.get_metric_history(run_id, "charts/frames")) == [32, 64]
    assert [f.path for f in client.list_artifacts(run_id, "checkpoints")] == ["checkpoints/last.ckpt"]
    with pytest.raises(ConfigError, match="nothing to sync"):
        sync(moved)


def test_an_interrupted_sync_can_run_again_without_duplicates(unsynced, monkeypatch):
    client, run_id, out = unsynced
    real = mlflow.MlflowClient.set_terminated

    def refuse(self, *a, **k):
        raise RuntimeError("the store went away")

    monkeypatch.setattr(mlflow.MlflowClient, "set_terminated", refuse)
    with pytest.raises(ConfigError, match="refused the sync .*the store went away.*run it again") as info:
        sync(out)
    assert "\n" not in str(info.value) and (out / "unsynced.json").is_file()
    monkeypatch.setattr(mlflow.MlflowClient, "set_terminated", real)
    assert sync(out).rows == 2
    assert sorted(m.step for m in client.get_metric_history(run_id, "charts/frames")) == [32, 64]
    assert client.get_run(run_id).info.status == "KILLED"


@pytest.mark.parametrize(
    ("content", "words"),
    [("{not json", "unreadable or corrupt"), ('{"run_id": 3}', "not an ngac sync record"), ("[]", "not an ngac")],
)
def test_a_corrupt_record_is_one_line(unsynced, content, words):
    _, _, out = unsynced
    (out / "unsynced.json").write_text(content)
    with pytest.raises(ConfigError, match=words) as info:
        sync(out)
    assert "\n" not in str(info.value)


def test_an_unknown_run_is_one_line(unsynced):
    _, _, out = unsynced
    record = json.loads((out / "unsynced.json").read_text())
    (out / "unsynced.json").write_text(json.dumps({**record, "run_id": "0" * 32}))
    with pytest.raises(ConfigError, match=f"run {'0' * 32} of .* is not in sqlite:///"):
        sync(out)
    assert (out / "metrics_buffer.jsonl").is_file(), "nothing is marked synced"
