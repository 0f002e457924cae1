"""Bad input: one line naming the bad value and the valid choices, before anything starts."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ngac.agents.data as data_mod
import ngac.run as run_mod
from ngac.cli import main, precheck
from ngac.validate import ConfigError

# (overrides, words that must appear in the one-line message)
CLI_CASES = [
    (["curvature=newton"], ["newton", "sherman_morrison", "kfac"]),
    (["env=marsrover"], ["marsrover", "halfcheetah", "hopper"]),
    (["env.id=NoSuchTask-v9"], ["NoSuchTask-v9"]),
    (["trainer.no_such_key=1"], ["no_such_key", "total_frames"]),
    (["curvature.damping=0"], ["damping", "> 0"]),
    (["curvature.damping=-0.5"], ["damping", "-0.5"]),
    (["agent.lr=0", "agent.step_rule=fixed"], ["agent.lr", "> 0"]),
    (["agent.lr=-1"], ["agent.lr"]),
    (["trainer.total_frames=0"], ["total_frames", "positive"]),
    (["trainer.total_frames=-100"], ["total_frames", "-100"]),
    (["agent.frames_per_batch=1000", "env.num_envs=32"], ["1000", "num_envs=32", "multiple"]),
    (["agent.step_rule=newton"], ["newton", "fixed", "trust_region", "line_search"]),
    (["curvature=sherman_morrison", "curvature.mode=triple"], ["triple", "batch_mean", "single_sample"]),
    (["curvature=sherman_morrison", "curvature.fisher_vector=x"], ["fisher_vector", "score", "advantage_weighted"]),
    (["curvature=kfac", "curvature.bogus=1"], ["bogus"]),
    (["curvature.damping={schedule: zigzag, start: 1, end: 0.1, steps: 10}"], ["zigzag", "exponential"]),
    (["agent.max_kl=0"], ["max_kl"]),
    (["agent.gamma=1.5"], ["gamma", "1.5"]),
    (["env.num_envs=0"], ["num_envs"]),
    (["env.workers=0"], ["env.workers=0", ">= 1"]),
    (["env.workers=3"], ["env.workers=3", "num_envs=32", "1, 2, 4, 8, 16, 32"]),
    (["trainer.accelerator=tpu"], ["tpu", "cpu", "gpu"]),
    (["agent.activation=swish"], ["swish", "tanh"]),
    (["seed=abc"], ["seed='abc'", "integer"]),
    (["seed=-1"], ["seed=-1", "integer"]),
    (["trainer.devices=0"], ["trainer.devices=0", "positive integer"]),
    (["trainer.devices=-2"], ["trainer.devices=-2", "positive integer"]),
    (["agent.hidden_sizes=[64,-1]"], ["agent.hidden_sizes=[64, -1]", "positive integers"]),
    (["agent.init_log_std=nan"], ["agent.init_log_std=nan", "finite"]),
    (["agent.line_search.shrink=2"], ["agent.line_search.shrink=2", "(0, 1)"]),
    (["agent.line_search.max_backtracks=-1"], ["max_backtracks=-1", ">= 0"]),
    (["agent.critic.hidden_sizes=abc"], ["agent.critic.hidden_sizes='abc'", "positive integers"]),
    (["trainer.progress_bar=maybe"], ["trainer.progress_bar='maybe'", "true or false"]),
    (["algo=ppo", "agent.clip_epsilon=1.5"], ["agent.clip_epsilon=1.5", "(0, 1)"]),
    (["algo=ppo", "agent.lr=0"], ["agent.lr=0", "positive"]),
]


@pytest.fixture
def no_env(monkeypatch):
    """Fail the test if anything tries to create an environment."""

    def boom(*a, **k):
        raise AssertionError("an environment was created before the input was validated")

    monkeypatch.setattr(data_mod, "make_env", boom)
    monkeypatch.setattr(run_mod, "env_dims", boom)


@pytest.mark.parametrize("overrides,words", CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES])
def test_cli_rejects_bad_input_in_one_line(overrides, words, capsys, no_env):
    assert main(["train", *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ngac: error: ") and "\n" not in err, err
    for w in words:
        assert w in err, (w, err)


def test_missing_checkpoint(tmp_path, cfg_factory, no_env):
    cfg = cfg_factory(f"resume={tmp_path}/nope.ckpt")
    with pytest.raises(ConfigError, match="no such checkpoint"):
        run_mod.TrainingRun(cfg)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage", b"\x80\x04not a pickle at all"])
def test_truncated_or_corrupted_checkpoint(tmp_path, cfg_factory, content, no_env):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(content)
    cfg = cfg_factory(f"resume={bad}")
    with pytest.raises(ConfigError, match="truncated or corrupted|not an ngac"):
        run_mod.TrainingRun(cfg)


def test_truncated_real_checkpoint(tmp_path, cfg_factory):
    cfg = cfg_factory("env=pendulum")
    trainer = run_mod.TrainingRun(cfg)
    trainer.fit()
    good = trainer.ckpt_dir / "last.ckpt"
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ConfigError, match="truncated or corrupted"):
        run_mod.TrainingRun(cfg_factory("env=pendulum", f"resume={cut}"))
    with pytest.raises(ConfigError, match="env.id='Pendulum-v1', not 'CartPole-v1'"):
        run_mod.TrainingRun(cfg_factory("env=cartpole", f"resume={good}"))
    with pytest.raises(ConfigError, match="curvature.name='sherman_morrison', not 'kfac'"):
        run_mod.TrainingRun(cfg_factory("env=pendulum", "curvature=kfac", f"resume={good}"))
    with pytest.raises(ConfigError, match="env.num_envs=2, not 4; resume with env.num_envs=2"):
        run_mod.TrainingRun(cfg_factory("env=pendulum", "env.num_envs=4", f"resume={good}"))
    with pytest.raises(ConfigError, match="env.workers=1, not 2; resume with env.workers=1"):
        run_mod.TrainingRun(cfg_factory("env=pendulum", "env.workers=2", f"resume={good}"))
    with pytest.raises(ConfigError, match=r"agent.hidden_sizes=\[64, 64\], not \[32\]"):
        run_mod.TrainingRun(cfg_factory("env=pendulum", "agent.hidden_sizes=[32]", f"resume={good}"))


def test_not_a_checkpoint(tmp_path, cfg_factory, no_env):
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ConfigError, match="not an ngac checkpoint"):
        run_mod.TrainingRun(cfg_factory(f"resume={other}"))


def test_unreachable_tracking_uri(cfg_factory, no_env):
    cfg = cfg_factory("logger.tracking_uri=http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="unreachable") as info:
        run_mod.TrainingRun(cfg)
    assert "\n" not in str(info.value)


def test_unusable_sqlite_store_is_one_line(cfg_factory, no_env):
    with pytest.raises(ConfigError, match="unreachable") as info:
        run_mod.TrainingRun(cfg_factory("logger.tracking_uri=sqlite:////proc/nope/x.db"))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("override", ["seed=-1", "trainer.devices=0", "agent.init_log_std=nan"])
def test_bad_input_creates_no_mlflow_run(tmp_path, override):
    """Every check runs before the MLflow run exists: a refused input leaves no store and no run."""
    out = subprocess.run(
        [sys.executable, "-m", "ngac.cli", "train", override, f"logger.tracking_uri=sqlite:///{tmp_path}/m.db"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and out.stderr.strip().startswith("ngac: error:"), out.stderr[-2000:]
    assert not (tmp_path / "m.db").exists()


def test_unwritable_out_dir(tmp_path, cfg_factory, no_env):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = cfg_factory(f"out_dir={blocker}/sub")
    with pytest.raises(ConfigError, match="cannot be written"):
        run_mod.TrainingRun(cfg)


def test_unsupported_action_space(no_env):
    import gymnasium as gym

    from ngac.envs import env_dims

    if "ngac-test/MultiDiscrete-v0" not in gym.envs.registry:
        gym.register("ngac-test/MultiDiscrete-v0", entry_point=_MultiDiscreteEnv)
    with pytest.raises(ValueError, match="MultiDiscrete") as info:
        env_dims({"id": "ngac-test/MultiDiscrete-v0"})
    assert "\n" not in str(info.value)


class _MultiDiscreteEnv:
    def __new__(cls, **kwargs):
        import gymnasium as gym
        import numpy as np

        class E(gym.Env):
            observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
            action_space = gym.spaces.MultiDiscrete([2, 3])

            def reset(self, *, seed=None, options=None):
                return np.zeros(2, np.float32), {}

            def step(self, a):
                return np.zeros(2, np.float32), 0.0, True, False, {}

        return E()


def test_cli_error_is_one_line_in_a_real_process(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "ngac.cli", "train", "curvature.damping=-1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert lines == [lines[-1]] and lines[-1].startswith("ngac: error:"), out.stderr
    assert not (tmp_path / "mlflow.db").exists(), "a run was created for bad input"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    damping=st.floats(allow_nan=True, allow_infinity=True),
    frames=st.integers(min_value=-(10**6), max_value=10**7),
    max_kl=st.floats(allow_nan=True, allow_infinity=True),
)
def test_generated_values_are_accepted_or_rejected_cleanly(damping, frames, max_kl):
    overrides = [f"curvature.damping={damping}", f"trainer.total_frames={frames}", f"agent.max_kl={max_kl}"]
    valid = damping > 0 and damping != float("inf") and frames > 0 and max_kl > 0 and max_kl != float("inf")
    if valid:
        precheck(overrides)
    else:
        with pytest.raises(ConfigError) as info:
            precheck(overrides)
        assert "\n" not in str(info.value)


def test_glob_sweeps_are_checked_not_crashed():
    precheck(["curvature=glob(*)", "env=pendulum"])  # every backend composes and validates
    precheck(["curvature=glob(sh*)"])
