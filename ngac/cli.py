"""The ``ngac`` command: ``train`` (Hydra app), ``eval`` and ``compare``.

``ngac train`` composes the config once *before* Hydra runs, so that an unknown env, backend or
key, or a bad value, is a one-line error before anything starts, instead of a traceback.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

USAGE = """usage: ngac <command> [args]

commands:
  train [KEY=VALUE ...] [-m]   train (Hydra overrides; -m runs a sweep), e.g.
                               ngac train curvature=kfac env=hopper seed=3
  eval CHECKPOINT [--episodes N] [--video OUT.mp4]
                               run a saved policy deterministically
  compare EXPERIMENT_OR_SWEEP [--out DIR] [--tracking-uri URI]
                               learning curves and a summary table from MLflow
  sync OUT_DIR [--tracking-uri URI]
                               send what a run could not send to MLflow (server down at its end)

`ngac train --cfg job` prints the composed config; `ngac train --help` lists the groups.
"""

CONFIG_MODULE = "ngac.configs"
MAX_CHECKED_COMBINATIONS = 64


def _err(message: str) -> int:
    print(f"ngac: error: {message}", file=sys.stderr)
    return 2


def config_dir() -> Path:
    import ngac.configs

    return Path(ngac.configs.__file__).parent


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def _one_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines)[:400] if lines else type(exc).__name__


def precheck(overrides: list[str]) -> None:
    """Compose (each combination of) the overrides and validate; raise ConfigError on bad input."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from ngac.validate import ConfigError, validate_config

    user = [o for o in overrides if not o.startswith(("hydra.", "hydra/", "+hydra", "~hydra"))]
    try:
        parsed = OverridesParser.create().parse_overrides(user)
    except HydraException as exc:
        raise ConfigError(f"cannot parse the overrides: {_one_line(exc)}") from None
    groups = {p.parent.name for p in config_dir().glob("*/*.yaml")}
    expanded: list[list[str]] = []
    for ov in parsed:
        key = ov.get_key_element().lstrip("+~")
        if isinstance(ov.value(), Glob):  # glob(*) over a group's options: Hydra expands it only at launch
            values = ov.value().filter(group_options(key)) if key in groups else []
        else:
            values = list(ov.sweep_string_iterator()) if ov.is_sweep_override() else [ov.get_value_element_as_str()]
        if key in groups:
            valid = group_options(key)
            for v in values:
                if v not in valid and v != "null":
                    raise ConfigError(f"{key}={v!r} is not a known {key}; valid: {', '.join(valid)}")
        expanded.append([f"{ov.get_key_element()}={v}" for v in values])
    combos = list(itertools.islice(itertools.product(*expanded), MAX_CHECKED_COMBINATIONS)) if expanded else [()]
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
        for combo in combos:
            try:
                cfg = compose("config", overrides=list(combo))
            except (HydraException, OmegaConfBaseException) as exc:
                # Explain against the config with the same group choices (curvature=kfac has no `mode`).
                chosen = [ov for ov in combo if ov.split("=", 1)[0].lstrip("+~") in groups]
                try:
                    base = compose("config", overrides=chosen)
                except (HydraException, OmegaConfBaseException):
                    base = compose("config")
                raise ConfigError(_explain_compose_error(exc, list(combo), base, chosen)) from None
            OmegaConf.set_struct(cfg, False)
            validate_config(cfg)
    GlobalHydra.instance().clear()


def _explain_compose_error(exc: Exception, combo: list[str], base, chosen: list[str]) -> str:
    """An unknown key names the options valid for the chosen group option, never Hydra's ``+key`` hint."""
    from omegaconf import OmegaConf

    text = _one_line(exc)
    for ov in combo:
        key = ov.split("=", 1)[0].lstrip("+~")
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(base, parent) if parent else base
        if node is not None and OmegaConf.is_dict(node) and leaf not in node and not ov.startswith("+"):
            valid = ", ".join(sorted(str(k) for k in node.keys()))
            group = parent.split(".", 1)[0]
            which = next((c.split("=", 1)[1] for c in chosen if c.split("=", 1)[0].lstrip("+~") == group), None)
            under = f" under {parent}" + (f" ({group}={which})" if which else "") if parent else ""
            return f"unknown config key {key!r}; valid keys{under}: {valid}"
    return text.split(" To append to your config use")[0]


def check_hydra_dir(argv: list[str]) -> None:
    """A relative Hydra run (or sweep) folder needs a writable working directory."""
    from ngac.validate import check_cwd_writable

    key = "hydra.sweep.dir" if ("-m" in argv or "--multirun" in argv) else "hydra.run.dir"
    given = [a.split("=", 1)[1] for a in argv if a.startswith(key + "=")]
    if not (given and os.path.isabs(given[-1])):
        check_cwd_writable(Path.cwd(), key)


def train(argv: list[str]) -> int:
    from ngac.validate import ConfigError

    if "--help" in argv or "-h" in argv:
        from ngac.help import render_help

        print(render_help(config_dir(), [a for a in argv if not a.startswith("-")]))
        return 0
    if not any(a in argv for a in ("--hydra-help", "--cfg", "-c", "--info", "--resolve")):
        overrides = [a for a in argv if not a.startswith("-")]
        try:
            precheck(overrides)
            check_hydra_dir(argv)
        except ConfigError as exc:
            return _err(str(exc))
    from ngac.app import hydra_main

    sys.argv = ["ngac train", *argv]
    hydra_main()
    return 0


def evaluate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ngac eval", description="Run a saved policy deterministically.")
    parser.add_argument("checkpoint")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument(
        "--video", default=None, help="write an MP4 of one episode here (MuJoCo tasks; needs MUJOCO_GL)"
    )
    args = parser.parse_args(argv)
    from ngac.evaluation import eval_checkpoint
    from ngac.sizes import check_eval_episodes
    from ngac.validate import ConfigError

    if args.episodes < 1:
        return _err(f"--episodes={args.episodes} is invalid; it must be a positive integer")
    try:
        check_eval_episodes(args.episodes, "--episodes")
        result = eval_checkpoint(args.checkpoint, episodes=args.episodes, seed=args.seed, video=args.video)
    except (ConfigError, RuntimeError) as exc:
        return _err(str(exc))
    print(
        f"{result['episodes']} episodes: return {result['mean_return']:.2f} +- {result['std_return']:.2f}, "
        f"length {result['mean_length']:.0f}"
    )
    if result.get("video"):
        print(f"video: {result['video']}")
    return 0


def sync(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ngac sync", description="Send what a run could not send to MLflow.")
    parser.add_argument("out_dir", help="the run's output folder (the one holding checkpoints/)")
    parser.add_argument("--tracking-uri", default=None, help="another address for the same store")
    args = parser.parse_args(argv)
    from ngac.sync import sync as sync_run
    from ngac.validate import ConfigError

    try:
        done = sync_run(args.out_dir, args.tracking_uri)
    except ConfigError as exc:
        return _err(str(exc))
    if done.skipped_lines:
        print(f"ngac: note: skipped {done.skipped_lines} unreadable line(s) of the metrics buffer", file=sys.stderr)
    for path in done.missing:
        print(f"ngac: warning: artifact {path} no longer exists; not uploaded", file=sys.stderr)
    print(f"run {done.run_id}: {done.rows} metric rows, {done.artifacts} artifacts sent; status {done.status}")
    return 0


def compare(argv: list[str]) -> int:
    from ngac.compare import main as compare_main

    return compare_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in ("train", "eval") and os.environ.get("MUJOCO_GL") is not None:
        # MuJoCo reads MUJOCO_GL when imported (TorchRL imports it): check before importing them.
        from ngac.envs.render import check_gl_backend

        try:
            check_gl_backend()
        except ValueError as exc:
            return _err(str(exc))
    commands = {"train": train, "eval": evaluate, "compare": compare, "sync": sync}
    if command not in commands:
        return _err(f"unknown command {command!r}; valid: {', '.join(commands)}")
    return commands[command](rest)


if __name__ == "__main__":
    sys.exit(main())
