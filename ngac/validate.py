"""Every check on user input, before any environment or MLflow run exists.

One error type, :class:`ConfigError`, whose message is one line naming the bad value and the
valid choices; the CLI prints it as ``ngac: error: ...`` and exits with status 2.

- :func:`validate_config`: the composed config's values (ranges, types, choices). The curvature
  backend's and the environment's own options are checked by their constructors' checks
  (``build_curvature``, ``validate_env_config``), which this wraps.
- :func:`read_checkpoint` / :func:`check_compatible`: a checkpoint to resume or evaluate.
- :func:`check_out_dir`, :func:`check_tracking_server`, :func:`check_gl_backend`: the outside world.
"""

from __future__ import annotations

import math
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ngac.agents import AGENTS, CHECKPOINT_FORMAT, CHECKPOINT_VERSION
from ngac.agents.networks import ACTIVATIONS
from ngac.agents.step_rules import STEP_RULES
from ngac.curvature import as_schedule, build_curvature
from ngac.envs import validate_env_config
from ngac.envs.render import check_gl_backend as _probe_gl

from .mlflow_utils import DEFAULT_TRACKING_URI, fail_fast, sqlite_init_lock


class ConfigError(ValueError):
    """Bad user input, reported in one line."""


def _get(cfg: Any, key: str) -> Any:
    return OmegaConf.select(cfg, key, throw_on_missing=False)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check(cfg: Any, key: str, ok: Callable[[Any], bool], expected: str) -> None:
    value = _get(cfg, key)
    if not ok(value):
        raise ConfigError(f"{key}={value!r} is invalid; it must be {expected}")


def _choice(cfg: Any, key: str, choices: tuple[str, ...] | list[str]) -> None:
    value = _get(cfg, key)
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of {', '.join(choices)}")


def positive_int(v: Any) -> bool:
    return _is_int(v) and v > 0


def positive(v: Any) -> bool:
    return _is_real(v) and v > 0


def boolean(v: Any) -> bool:
    return isinstance(v, bool)


def _sizes(cfg: Any, key: str) -> None:
    value = _get(cfg, key)
    items = list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else None
    if items is None or not all(positive_int(x) for x in items):
        raise ConfigError(f"{key}={_plain(value)!r} is invalid; it must be a list of positive integers, e.g. [64, 64]")


def _plain(v: Any) -> Any:
    return OmegaConf.to_container(v) if OmegaConf.is_config(v) else v


POSITIVE_INTS = (
    "trainer.total_frames",
    "trainer.eval_every_frames",
    "trainer.eval_episodes",
    "trainer.checkpoint_every_frames",
    "trainer.num_threads",
    "trainer.max_bad_batches",
    "agent.frames_per_batch",
)
UNIT_INTERVAL = ("agent.gamma", "agent.gae_lambda")
MAX_EXPERIMENT_NAME = 500  # MLflow's limit on an experiment name

# Per agent: (key, test, what it must be).
AGENT_KEYS: dict[str, list[tuple[str, Callable[[Any], bool], str]]] = {
    "nac": [
        ("agent.max_kl", positive, "a positive number"),
        ("agent.critic.lr", positive, "a positive number"),
        ("agent.critic.epochs", positive_int, "a positive integer"),
        ("agent.critic.minibatch_size", positive_int, "a positive integer"),
        ("agent.line_search.max_backtracks", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
        ("agent.line_search.shrink", lambda v: _is_real(v) and 0 < v < 1, "a number in (0, 1)"),
        ("agent.explode_factor", lambda v: _is_real(v) and v > 1, "a number > 1"),
    ],
    "ppo": [
        ("agent.lr", positive, "a positive number"),
        ("agent.epochs", positive_int, "a positive integer"),
        ("agent.minibatch_size", positive_int, "a positive integer"),
        ("agent.clip_epsilon", lambda v: _is_real(v) and 0 < v < 1, "a number in (0, 1)"),
        ("agent.entropy_coeff", lambda v: _is_real(v) and v >= 0, "a number >= 0"),
        ("agent.critic_coeff", positive, "a positive number"),
        ("agent.max_grad_norm", positive, "a positive number"),
    ],
}


def validate_config(cfg: DictConfig) -> None:
    """Check a composed ``ngac train`` config; raises :class:`ConfigError`."""
    _check(cfg, "seed", lambda v: _is_int(v) and 0 <= v < 2**31, "an integer in [0, 2^31)")
    try:
        validate_env_config(cfg.env)
    except ValueError as exc:
        raise ConfigError(f"env: {exc}") from None
    _choice(cfg, "agent.name", tuple(AGENTS))
    agent_cls = AGENTS[cfg.agent.name]
    if agent_cls.uses_curvature:
        if _get(cfg, "curvature") is None:
            raise ConfigError(
                f"agent.name={cfg.agent.name!r} needs a curvature backend; choose one with curvature=NAME"
            )
        try:
            build_curvature(**OmegaConf.to_container(cfg.curvature, resolve=True))
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc)) from None
        _choice(cfg, "agent.step_rule", STEP_RULES)
        try:
            as_schedule(OmegaConf.to_container(cfg.agent, resolve=True)["lr"], "agent.lr")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    for key, ok, expected in AGENT_KEYS[cfg.agent.name]:
        _check(cfg, key, ok, expected)
    for key in POSITIVE_INTS:
        _check(cfg, key, positive_int, "a positive integer")
    for key in UNIT_INTERVAL:
        _check(cfg, key, lambda v: _is_real(v) and 0 <= v <= 1, "a number in [0, 1]")
    _check(cfg, "agent.init_log_std", lambda v: _is_real(v) and -20 <= v <= 2, "a finite number in [-20, 2]")
    _check(cfg, "agent.normalize_advantages", boolean, "true or false")
    _sizes(cfg, "agent.hidden_sizes")
    _sizes(cfg, "agent.critic.hidden_sizes")
    _choice(cfg, "agent.activation", tuple(sorted(ACTIVATIONS)))
    _check(cfg, "trainer.progress_bar", boolean, "true or false")
    _choice(cfg, "trainer.accelerator", ("cpu", "gpu", "cuda", "auto"))
    _check(cfg, "trainer.devices", positive_int, "a positive integer (data-parallel ranks)")
    if cfg.trainer.accelerator in ("gpu", "cuda") and torch.cuda.is_available():
        if cfg.trainer.devices > (count := torch.cuda.device_count()):
            raise ConfigError(
                f"trainer.devices={cfg.trainer.devices} but {count} GPU(s) are visible; use at most {count}"
            )
    _check(cfg, "logger.experiment_name", lambda v: isinstance(v, str) and v.strip() != "", "a non-empty name")
    if len(name := str(cfg.logger.experiment_name)) > MAX_EXPERIMENT_NAME:
        raise ConfigError(
            f"logger.experiment_name={name[:40] + '...'!r} has {len(name)} characters; MLflow takes at most "
            f"{MAX_EXPERIMENT_NAME}"
        )
    _check(cfg, "logger.log_checkpoint", boolean, "true or false")
    batch, n = cfg.agent.frames_per_batch, cfg.env.num_envs
    if batch % n:
        raise ConfigError(
            f"agent.frames_per_batch={batch} is not divisible by env.num_envs={n}; "
            f"use a multiple of {n}, e.g. {max(n, batch // n * n)}"
        )
    if cfg.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator=gpu but no CUDA device is visible; use trainer.accelerator=cpu or auto")


# ----------------------------------------------------------------------------- checkpoints
# Settings a run cannot change when it resumes: the algorithm, the networks, the environments'
# shape and normalisation.
MUST_MATCH = (
    "env.id",
    "agent.name",
    "curvature.name",
    "agent.hidden_sizes",
    "agent.activation",
    "agent.critic.hidden_sizes",
    "env.num_envs",
    "env.workers",  # each worker holds its share of the simulators' state
    "trainer.devices",  # each rank has its own environments and collector
    "env.normalize_obs",
    "env.scale_reward",
)
#: the value of a MUST_MATCH key in a checkpoint written before the key existed
MUST_MATCH_ABSENT = {"env.workers": 1, "trainer.devices": 1}
#: Beyond MUST_MATCH, every key under these changes the arithmetic (the seed, the batch shape,
#: gamma, the backend's options ...) and must match too; a key the checkpoint predates is skipped.
ARITHMETIC = ("seed", "agent.", "curvature.", "env.")
#: keys under ARITHMETIC that do not change it: read by ``ngac compare`` only, or a warning threshold
MAY_CHANGE = frozenset({"env.random_return", "env.reference_return", "agent.explode_factor"})
#: what a checkpoint needs to continue a run (Lightning's entries, then ngac's)
RESUME_KEYS = ("state_dict", "optimizer_states", "loops", "callbacks")
NGAC_KEYS = ("config", "mlflow_run_id", "frames", "agent_state")


def read_checkpoint(path: str | Path, key: str = "resume") -> dict[str, Any]:
    """Load and sanity-check an ngac checkpoint; every failure is one ``ConfigError`` line that
    names the option it came from (``resume=...`` for training, ``checkpoint=...`` for eval)."""
    path = Path(path)
    where = f"{key}={str(path)!r}"
    if not path.is_file():
        raise ConfigError(f"{where}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ConfigError(f"{where}: truncated or corrupted checkpoint ({type(exc).__name__})") from None
    meta = ckpt.get("ngac") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{where}: not an ngac checkpoint")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"{where}: checkpoint version {meta.get('version')}, this ngac reads {CHECKPOINT_VERSION}")
    need = [k for k in NGAC_KEYS if k not in meta] + [
        k for k in (RESUME_KEYS if key == "resume" else ("state_dict",)) if not isinstance(ckpt.get(k), (dict, list))
    ]
    if need:
        raise ConfigError(f"{where}: incomplete checkpoint (no {', '.join(need)}); use another checkpoint of the run")
    return ckpt


def check_compatible(ckpt: dict[str, Any], cfg: Any, path: str | Path) -> None:
    """Raise a one-line ``ConfigError`` if ``cfg`` cannot continue ``ckpt``."""
    saved = OmegaConf.create(ckpt["ngac"]["config"])
    for key in MUST_MATCH:
        was, now = _plain(OmegaConf.select(saved, key)), _plain(OmegaConf.select(cfg, key))
        if was is None:
            was = MUST_MATCH_ABSENT.get(key)
        if was != now:
            raise ConfigError(
                f"resume={str(path)!r} was trained with {key}={was!r}, not {now!r}; resume with {key}={was!r}"
            )
    old = _flat(OmegaConf.to_container(saved, resolve=True))
    new = {k: _plain(OmegaConf.select(cfg, k, default=_ABSENT)) for k in old if k.startswith(ARITHMETIC)}
    changed = [k for k, v in new.items() if k not in MAY_CHANGE and v is not _ABSENT and v != old[k]]
    if changed:
        key, more = changed[0], f" (and {', '.join(changed[1:])})" if changed[1:] else ""
        raise ConfigError(
            f"resume={str(path)!r} was trained with {key}={old[key]!r}, not {new[key]!r}{more}; a resume continues "
            f"the same arithmetic: resume with {key}={old[key]!r}, or start a new run without resume"
        )


def check_budget_left(ckpt: dict[str, Any], cfg: Any, path: str | Path) -> int:
    """A resume must have frames left to train; returns the ``max_epochs`` that trains them.

    Lightning's fit loop makes one pass (epoch) over the rollout stream. A checkpoint written at
    the end of a finished run holds a completed pass, so extending that run (a larger
    ``trainer.total_frames``) needs one pass more; one written mid-run continues its pass."""
    done, total = int(ckpt["ngac"]["frames"]), int(_get(cfg, "trainer.total_frames"))
    if done >= total:
        raise ConfigError(
            f"resume={str(path)!r} has trained {done} frames and trainer.total_frames={total}: nothing is left to "
            f"train; to continue the run pass a larger trainer.total_frames, e.g. {2 * done}"
        )
    try:
        passes = int(ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"])
    except (KeyError, TypeError, ValueError):
        passes = 0
    return passes + 1


_ABSENT = object()  # a key this config lacks (the checkpoint's ngac had it, this one does not)


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ----------------------------------------------------------------------------- the outside world
def check_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"out_dir={str(out_dir)!r} cannot be written ({exc.strerror}); choose a writable folder"
        ) from None


def check_tracking_server(uri: str) -> None:
    """Raise a one-line ``ConfigError`` if the tracking store cannot be reached or created."""
    from mlflow import MlflowClient

    try:
        with fail_fast(), sqlite_init_lock(uri):
            MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure here means "unreachable"
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"logger.tracking_uri={uri!r} is unreachable ({reason}); start the server, or unset "
            f"MLFLOW_TRACKING_URI to use the local store {DEFAULT_TRACKING_URI}"
        ) from None


def check_run_in_store(uri: str, run_id: str, path: str | Path, saved_uri: str | None = None) -> None:
    """The MLflow run a checkpoint continues must be in this store (and not deleted)."""
    from mlflow import MlflowClient

    try:
        with fail_fast():
            run = MlflowClient(uri).get_run(run_id)
        gone = run.info.lifecycle_stage == "deleted"
    except Exception:  # noqa: BLE001 - MLflow raises its own exception for an unknown run id
        gone = True
    if gone:
        where = f"; it was trained with logger.tracking_uri={saved_uri!r}" if saved_uri and saved_uri != uri else ""
        raise ConfigError(
            f"resume={str(path)!r} continues MLflow run {run_id}, which is not in logger.tracking_uri={uri!r}{where}; "
            f"resume with the store it was trained with"
        )


def check_cwd_writable(cwd: Path, option: str) -> None:
    """Hydra writes its run folder (``outputs/...``, ``multirun/...``) under the working directory."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(prefix=".ngac-write-test-", dir=cwd)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(
            f"the working directory {str(cwd)!r} cannot be written ({exc.strerror}), and Hydra writes its run "
            f"folder there; run from a writable folder or pass {option}=/a/writable/path"
        ) from None


def check_gl_backend() -> None:
    """``MUJOCO_GL``, when set, must name a rendering backend that works here."""
    if os.environ.get("MUJOCO_GL") is None:
        return
    try:
        _probe_gl()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
