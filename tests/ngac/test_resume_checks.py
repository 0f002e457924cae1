"""What a resume may change: a larger budget extends a finished run; a change to the arithmetic, a
checkpoint without its state or whose MLflow run is elsewhere, is one line and changes no run."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch

from ngac.run import TrainingRun
from ngac.validate import ConfigError

from .run_utils import make_cfg

FINISHED_AT_THE_END = ("env=pendulum", "trainer.checkpoint_every_frames=1000000")  # last.ckpt from on_train_end


def _finished(cfg) -> tuple[TrainingRun, Path]:
    run = TrainingRun(cfg)
    assert run.fit().status == "FINISHED"
    return run, run.ckpt_dir / "last.ckpt"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished run that the refusals below leave untouched (CI time: it is trained once)."""
    folder = tmp_path_factory.mktemp("finished")
    run, ckpt = _finished(make_cfg(folder, *FINISHED_AT_THE_END))
    return run, ckpt, lambda *ov: make_cfg(folder, *FINISHED_AT_THE_END, *ov)  # configs on the run's store


def _status(run: TrainingRun) -> str:
    return mlflow.MlflowClient(run.tracking_uri).get_run(run.mlflow_run_id).info.status


def test_a_larger_budget_extends_a_finished_run_in_the_same_mlflow_run(cfg_factory):
    first, ckpt = _finished(cfg_factory(*FINISHED_AT_THE_END))
    with pytest.raises(ConfigError, match="has trained 64 frames and trainer.total_frames=64: nothing is left"):
        TrainingRun(cfg_factory(*FINISHED_AT_THE_END, f"resume={ckpt}"))
    more = TrainingRun(cfg_factory(*FINISHED_AT_THE_END, "trainer.total_frames=128", f"resume={ckpt}"))
    outcome = more.fit()
    assert outcome.status == "FINISHED" and more.model.frames == 128 and more.mlflow_run_id == first.mlflow_run_id
    assert torch.load(ckpt, weights_only=False)["ngac"]["frames"] == 128
    steps = [
        m.step for m in mlflow.MlflowClient(first.tracking_uri).get_metric_history(first.mlflow_run_id, "charts/frames")
    ]
    assert steps == [32, 64, 96, 128]
    assert outcome.final["eval/episode_return"] == outcome.final["eval/episode_return"]  # a number, not nan


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("seed=1", "seed=0, not 1"),
        ("agent.frames_per_batch=64", "agent.frames_per_batch=32, not 64"),
        ("agent.gamma=0.9", "agent.gamma=0.99, not 0.9"),
        ("curvature.damping=0.5", "curvature.damping=0.1, not 0.5"),
    ],
)
def test_a_change_to_the_arithmetic_is_one_line_and_the_run_stays_finished(finished, override, words):
    run, ckpt, cfg_factory = finished
    with pytest.raises(ConfigError) as info:
        TrainingRun(cfg_factory("trainer.total_frames=128", override, f"resume={ckpt}"))
    assert words in str(info.value) and "\n" not in str(info.value)
    assert _status(run) == "FINISHED"
    # What may change: the budget, evaluation and checkpoint cadence, logging.
    TrainingRun(cfg_factory("trainer.total_frames=96", "trainer.eval_episodes=2", f"resume={ckpt}")).lock.release()


def test_a_checkpoint_without_its_state_or_its_mlflow_run_is_one_line(finished, tmp_path):
    run, ckpt, cfg_factory = finished
    state = torch.load(ckpt, weights_only=False)
    del state["state_dict"]
    stripped = tmp_path / "elsewhere" / "checkpoints" / "last.ckpt"
    stripped.parent.mkdir(parents=True)
    torch.save(state, stripped)
    with pytest.raises(ConfigError, match=r"incomplete checkpoint \(no state_dict\)"):
        TrainingRun(cfg_factory("trainer.total_frames=128", f"resume={stripped}"))
    other = f"logger.tracking_uri=sqlite:///{tmp_path}/other.db"
    with pytest.raises(ConfigError, match=f"continues MLflow run {run.mlflow_run_id}, which is not in") as info:
        TrainingRun(cfg_factory("trainer.total_frames=128", other, f"resume={ckpt}"))
    assert "it was trained with logger.tracking_uri=" in str(info.value)
    assert _status(run) == "FINISHED"
