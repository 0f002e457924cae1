"""PeriodicEvaluation's best-so-far evaluation: a running maximum that a checkpoint carries."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from ngac.agents import callbacks
from ngac.agents import metrics as M


def _callback() -> callbacks.PeriodicEvaluation:
    return callbacks.PeriodicEvaluation(
        None, every_frames=10, episodes=2, seed=0, total_frames=100, stop=callbacks.StopFlag()
    )


@pytest.fixture
def evaluation(monkeypatch):
    returns = iter([100.0, 250.0, float("nan"), 120.0])

    def fake_evaluate(actor, env_cfg, train_env, *, episodes, seed):
        return {"mean_return": next(returns), "std_return": 0.0, "mean_length": 10.0, "episodes": episodes}

    monkeypatch.setattr(callbacks, "evaluate", fake_evaluate)
    cb = _callback()
    trainer = SimpleNamespace(datamodule=SimpleNamespace(env=None))
    return cb, trainer, SimpleNamespace(actor=None)


def test_best_is_the_running_maximum_and_skips_non_finite_returns(evaluation):
    cb, trainer, module = evaluation
    rows = [cb.run(trainer, module) for _ in range(4)]
    assert [r[M.EVAL_BEST] for r in rows] == [100.0, 250.0, 250.0, 250.0]
    assert math.isnan(rows[2][M.EVAL_RETURN])


def test_no_best_is_logged_before_a_finite_evaluation(monkeypatch, evaluation):
    cb, trainer, module = evaluation
    monkeypatch.setattr(
        callbacks, "evaluate", lambda *a, **k: {"mean_return": float("nan"), "std_return": 0.0, "mean_length": 0.0}
    )
    assert M.EVAL_BEST not in cb.run(trainer, module)


def test_the_best_survives_a_state_dict_round_trip(evaluation):
    cb, trainer, module = evaluation
    cb.run(trainer, module)
    cb.run(trainer, module)
    resumed = _callback()
    resumed.load_state_dict(cb.state_dict())
    assert resumed.best == 250.0
    resumed.load_state_dict({})  # a checkpoint written before the best was kept
    assert resumed.best == float("-inf")
