"""The ``ngac compare`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from .intervals import DEFAULT_REPS, DEFAULT_SEED
from .report import ARTIFACT_DIR, compare_runs


class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of argparse's usage + exit
        raise _ArgError(message)


def safe_dirname(selector: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in selector) or "runs"


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[:limit]


def main(argv: list[str]) -> int:
    parser = _Parser(
        prog="ngac compare",
        description="Learning curves and a summary table, per environment, for the MLflow runs of an experiment or a sweep.",
    )
    parser.add_argument(
        "selector", metavar="EXPERIMENT_OR_SWEEP", help="an experiment name, else a sweep name (tag sweep)"
    )
    parser.add_argument("--out", default=None, help="output folder (default compare/<selector>)")
    parser.add_argument("--tracking-uri", default=None, help="default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
    parser.add_argument("--group-by", default="algo", help="a tag (default algo, else backend) or param:<name>")
    parser.add_argument(
        "--log-to-run", default=None, metavar="RUN_ID", help="log the outputs to this run under compare/"
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=DEFAULT_REPS,
        help=f"bootstrap samples per interval (default {DEFAULT_REPS}; fewer is faster and coarser)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the bootstrap (default 0)")
    try:
        args = parser.parse_args(argv)
    except _ArgError as exc:
        print(f"ngac: error: {exc}", file=sys.stderr)
        return 2
    out = args.out or os.path.join("compare", safe_dirname(args.selector))
    try:
        result = compare_runs(
            args.tracking_uri,
            args.selector,
            out,
            group_by=args.group_by,
            parent_run_id=args.log_to_run,
            reps=args.reps,
            seed=args.seed,
        )
    except ValueError as exc:
        print(f"ngac: error: {_one_line(str(exc), 1000)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - e.g. --log-to-run names no run
        print(f"ngac: error: {type(exc).__name__}: {_one_line(str(exc) or type(exc).__name__)}", file=sys.stderr)
        return 2
    for line in result["warnings"]:
        print(f"ngac: warning: {line}", file=sys.stderr)
    print(f"{result['n_runs']} runs of {args.selector!r} (matched {result['matched']}) at {result['tracking_uri']}")
    print()
    print(result["table"])
    print()
    for key in ("png", "diagnostics_png", "intervals_png", "profiles_png", "pareto_png", "markdown", "csv"):
        if result[key] is not None:
            print(f"{key}: {result[key]}")
    for path in result["estimate_csvs"]:
        print(f"{path.stem}_csv: {path}")
    if args.log_to_run:
        print(f"logged to run {args.log_to_run} under {ARTIFACT_DIR}/")
    return 0
