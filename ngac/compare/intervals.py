r"""Interval estimates over seeds, computed with ``rliable`` (Agarwal et al., NeurIPS 2021).

Per environment and group, over the group's seeds:

* the final evaluation (each run's last ``eval/episode_return``): IQM and mean, each with a 95%
  stratified-bootstrap confidence interval (percentile method);
* the maximum over training of the across-seed mean evaluation (``max_mean_eval``) and of the
  across-seed IQM, on the frames at which every seed evaluated. A bootstrap sample draws whole seeds
  (curves), never one seed's frames with another's.

Across environments, on the scores normalised by :mod:`.scores`: the aggregate IQM and mean of the final
evaluation; the performance profiles (the fraction of runs above each threshold, with their CIs); and, within
each environment and across them, the probability of improvement P(X > Y) of each pair of groups (the
Mann-Whitney statistic averaged over tasks), with its CI from resampling each group's seeds on their own.

The bootstrap is rliable's (``library.get_interval_estimates``, percentile method). A bootstrap over tasks
with different seed counts resamples each task's seeds on its own (rliable's ``StratifiedIndependentBootstrap``);
with equal counts that is rliable's stratified bootstrap. The statistics are rliable's (``metrics.aggregate_iqm``,
``metrics.probability_of_improvement``, ``library.score_distributions``) written as whole-array numpy: scipy's
per-call overhead made the backends experiment's comparison take minutes; the tests check them equal.

Reproducible: rliable 1.2 draws its resamples from numpy's global generator whatever ``random_state`` says,
so each estimate re-seeds it from ``seed`` and the estimate's name (environment, groups, metric), and puts
the caller's generator state back afterwards. An estimate therefore does not change when groups are added.
A group with one seed gets its point estimates and no interval.
"""

from __future__ import annotations

import inspect
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from types import ModuleType

import numpy as np

DEFAULT_REPS = 2000
DEFAULT_SEED = 0
CONFIDENCE = 0.95
PROFILE_POINTS = 51


@cache
def rliable() -> tuple[ModuleType, ModuleType]:
    """``rliable.library`` and ``rliable.metrics``, imported once.

    rliable 1.2 requires ``arch < 8``, whose import calls pandas' ``deprecate_kwarg(old, new)``; pandas 3 made
    that ``deprecate_kwarg(klass, old, new)``. Under pandas 3 the old call is translated during the import.
    """
    import pandas.util._decorators as pandas_decorators

    original = pandas_decorators.deprecate_kwarg
    if next(iter(inspect.signature(original).parameters)) == "klass":

        def compatible(*args, **kwargs):  # type: ignore[no-untyped-def]
            if args and isinstance(args[0], str):
                args = (FutureWarning, *args)
            return original(*args, **kwargs)

        pandas_decorators.deprecate_kwarg = compatible
    try:
        from rliable import library, metrics
    finally:
        pandas_decorators.deprecate_kwarg = original
    return library, metrics


@dataclass(frozen=True)
class Interval:
    """A point estimate and its CI; ``lo``/``hi`` are nan where there is no interval (fewer than two seeds)."""

    point: float
    lo: float = math.nan
    hi: float = math.nan

    @classmethod
    def none(cls) -> Interval:
        return cls(math.nan)

    def affine(self, scale: float, shift: float) -> Interval:
        """``scale * x + shift`` of each end (IQM, mean and percentile CIs all commute with it)."""
        low, high = scale * self.lo + shift, scale * self.hi + shift
        return Interval(scale * self.point + shift, *((low, high) if scale >= 0 else (high, low)))

    def text(self, digits: int = 1) -> str:
        if not math.isfinite(self.point):
            return "–"
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            return f"{self.point:.{digits}f}"
        return f"{self.point:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


@contextmanager
def seeded(seed: int, *name: str) -> Iterator[None]:
    """numpy's global generator seeded from ``seed`` and ``name``, and restored afterwards."""
    state = np.random.get_state()
    np.random.seed(np.random.SeedSequence([seed, zlib.crc32("|".join(name).encode())]).generate_state(1)[0])
    try:
        yield
    finally:
        np.random.set_state(state)


def _bootstrap(
    scores: Sequence[np.ndarray], func: Callable[..., np.ndarray], reps: int, seed: int, name: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point estimates and the CI's lower and upper ends of ``func(*scores)``, each ``(n_runs, 1)``.

    No interval (nan ends) where some array has fewer than two rows.
    """
    library, _ = rliable()
    point = np.atleast_1d(np.asarray(func(*scores), dtype=float))
    if min(len(s) for s in scores) < 2:
        return point, np.full_like(point, math.nan), np.full_like(point, math.nan)
    data: np.ndarray | list[np.ndarray] = scores[0] if len(scores) == 1 else list(scores)
    with seeded(seed, *name):
        _, cis = library.get_interval_estimates({"x": data}, func, reps=reps, confidence_interval_size=CONFIDENCE)
    ci = np.asarray(cis["x"], dtype=float).reshape(2, -1)
    return point, ci[0], ci[1]


def iqm(scores: np.ndarray) -> np.ndarray:
    """rliable's ``metrics.aggregate_iqm`` (scipy's 25% ``trim_mean``) of each column, without scipy's per-call cost.

    scipy's argument handling costs about 1 ms a call, most of a bootstrap sample's time.
    """
    n = scores.shape[0]
    cut = int(0.25 * n)
    return np.sort(scores, axis=0)[cut : n - cut].mean(axis=0)


def _column(values: Sequence[float]) -> np.ndarray:
    return np.array([v for v in values if math.isfinite(v)], dtype=float).reshape(-1, 1)


def iqm_and_mean(values: Sequence[float], reps: int, seed: int, name: Sequence[str]) -> tuple[Interval, Interval]:
    """IQM and mean over seeds (nan values dropped), each with its stratified-bootstrap CI."""
    x = _column(values)
    if len(x) == 0:
        return Interval.none(), Interval.none()

    def stat(scores: np.ndarray) -> np.ndarray:
        return np.array([iqm(scores)[0], scores.mean()])

    point, lo, hi = _bootstrap([x], stat, reps, seed, name)
    return Interval(point[0], lo[0], hi[0]), Interval(point[1], lo[1], hi[1])


def max_over_training(curves: np.ndarray, reps: int, seed: int, name: Sequence[str]) -> tuple[Interval, Interval]:
    """Max over frames of the across-seed IQM and of the across-seed mean; ``curves`` is ``(seeds, frames)``.

    The bootstrap resamples seeds, i.e. rows of ``curves``: rliable resamples a column of row indices. The
    IQM of each frame is rliable's (:func:`iqm`), taken for all frames at once.
    """
    if curves.size == 0:
        return Interval.none(), Interval.none()
    rows = np.arange(len(curves), dtype=float).reshape(-1, 1)

    def stat(index: np.ndarray) -> np.ndarray:
        picked = curves[index[:, 0].astype(int)]
        return np.array([iqm(picked).max(), picked.mean(axis=0).max()])

    point, lo, hi = _bootstrap([rows], stat, reps, seed, name)
    return Interval(point[0], lo[0], hi[0]), Interval(point[1], lo[1], hi[1])


def aggregate(tasks: Sequence[np.ndarray], reps: int, seed: int, name: Sequence[str]) -> tuple[Interval, Interval]:
    """Across tasks (one ``(runs, 1)`` array of normalised scores each): the IQM of all runs, the mean of task means."""

    def stat(*scores: np.ndarray) -> np.ndarray:
        return np.array([iqm(np.concatenate(scores))[0], np.mean([s.mean() for s in scores])])

    point, lo, hi = _bootstrap(list(tasks), stat, reps, seed, name)
    return Interval(point[0], lo[0], hi[0]), Interval(point[1], lo[1], hi[1])


def improvement(
    xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], reps: int, seed: int, name: Sequence[str]
) -> Interval:
    """P(X > Y) averaged over tasks (task ``t``: ``xs[t]`` against ``ys[t]``, ``(runs, 1)`` each), with its CI.

    rliable's ``probability_of_improvement`` (the Mann-Whitney U over ``n_x n_y``, a tie counting one half),
    computed by comparing every pair of runs at once: scipy's test costs about 1 ms a call, and a bootstrap
    of 2000 samples over the pairs of nine groups on three tasks made that minutes.
    """
    k = len(xs)

    def stat(*scores: np.ndarray) -> np.ndarray:
        return np.array([np.mean([_u_fraction(scores[t], scores[k + t]) for t in range(k)])])

    point, lo, hi = _bootstrap([*xs, *ys], stat, reps, seed, name)
    return Interval(point[0], lo[0], hi[0])


def _u_fraction(x: np.ndarray, y: np.ndarray) -> float:
    diff = x.reshape(-1, 1) - y.reshape(1, -1)
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def profile_grid(tasks: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """``PROFILE_POINTS`` thresholds from the lowest to the highest score of any group."""
    values = np.concatenate([a.ravel() for group in tasks for a in group])
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    pad = 0.02 * (high - low) if high > low else 1.0
    return np.linspace(low - pad, high + pad, PROFILE_POINTS)


def performance_profile(
    tasks: Sequence[np.ndarray], tau: np.ndarray, reps: int, seed: int, name: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fraction of runs (all tasks pooled) with a score above each ``tau``, and the CI's ends.

    rliable's score distribution (``library.score_distributions``), computed for all thresholds at once.
    """

    def stat(*scores: np.ndarray) -> np.ndarray:
        return (np.concatenate(scores).reshape(-1, 1) > tau.reshape(1, -1)).mean(axis=0)

    return _bootstrap(list(tasks), stat, reps, seed, name)
