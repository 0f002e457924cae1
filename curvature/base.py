r"""The one interface between the actor-critic and every curvature backend.

The agent builds a :class:`PolicyBatch` (the actor, a closure that recomputes the per-sample
log-probabilities of the collected actions, the advantages, and optionally a closure for the mean
KL to the behaviour policy) and asks the backend for a :class:`Direction`:

.. math::

    d \approx (F + \lambda I)^{-1} g, \qquad g = \frac1B \sum_k A_k \nabla_\theta \log\pi_\theta(a_k|o_k).

The agent applies :math:`\theta \leftarrow \theta + \eta d` and reports back with
:meth:`Curvature.observe` (the measured KL, whether the step was applied, the step size and the
measured surrogate gain). It never asks which backend it is talking to.

Every backend reports, besides its own diagnostics, ``lambda``, ``direction_norm``, ``dFd``,
``direction_ms`` (the time of the direction alone; the agent's ``perf/update_ms`` is a whole update)
and ``cos_to_gradient`` :math:`= d \cdot g / (|d|\,|g|)`. With ``diagnose_every = N > 0`` every
N-th direction is also compared with the damped natural gradient of the same batch (see
:mod:`.diagnostics`): ``cos_to_natural``, ``cos_to_natural_fisher``, ``diagnose_ms``.

Adding a backend: one file in ``curvature/`` with a subclass decorated by :func:`register`, and
one ``configs/curvature/<name>.yaml``.
"""

from __future__ import annotations

import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .diagnostics import natural_gradient_diagnostics
from .schedules import Schedule, as_schedule
from .scores import Scores


@dataclass
class PolicyBatch:
    """What a backend may use. Everything expensive is computed lazily, at most once."""

    policy: nn.Module
    log_prob_fn: Callable[[], Tensor]
    """Recomputes ``log pi_theta(a_k | o_k)`` for the collected batch, shape ``[B]``, with graph."""
    advantages: Tensor
    """``A_k``, shape ``[B]`` (already normalised if the agent normalises them)."""
    kl_fn: Callable[[], Tensor] | None = None
    """Mean ``KL(pi_old || pi_theta)`` over the batch states, with graph (exact Fisher products)."""
    params: list[Tensor] | None = None
    all_mean: Callable[[Tensor], Tensor] | None = None
    """Average this tensor across data-parallel ranks (``None``: a single process). Every batch
    statistic a backend uses goes through it; per-rank batches must have equal sizes."""
    all_gather: Callable[[Tensor], Tensor] | None = None
    """Concatenate this per-sample tensor (first dimension ``B``) over the data-parallel ranks, in rank
    order (``None``: a single process). For backends that need every rank's samples, e.g. a ``B x B`` Gram."""

    def __post_init__(self) -> None:
        if self.params is None:
            self.params = [p for p in self.policy.parameters() if p.requires_grad]

    @cached_property
    def scores(self) -> Scores:
        return Scores.capture(self.policy, self.log_prob_fn, self.params, all_mean=self.all_mean)

    @cached_property
    def _advantages(self) -> Tensor:
        return self.advantages.detach().to(self.scores.a[0].dtype)

    @cached_property
    def grad(self) -> Tensor:
        r"""The policy gradient :math:`g = \frac1B \sum_k A_k s_k` (flat, ascent direction)."""
        if "mean_score_split" in self.__dict__:  # already paid for: g = A_bar s_bar + w
            s_bar, w, a_bar = self.mean_score_split
            return w + a_bar * s_bar
        return self.scores.weighted_mean(self._advantages)

    @cached_property
    def mean_score_split(self) -> tuple[Tensor, Tensor, Tensor]:
        r""":math:`(\bar s, w, \bar A)` with :math:`\bar s = \frac1B\sum_k s_k`,
        :math:`\bar A = \frac1B\sum_k A_k` and :math:`w = \frac1B\sum_k (A_k - \bar A) s_k`, so that
        :math:`g = \bar A \bar s + w` exactly.

        Both vectors come from one stacked contraction (:meth:`Scores.weighted_means`). The split keeps
        the part of ``g`` that is parallel to :math:`\bar s` by construction (all of it for a batch of
        one or constant advantages) out of any subtraction.
        """
        adv = self._advantages
        a_bar = self.scores.reduce(adv.mean())
        C = torch.stack([torch.ones_like(adv), adv - a_bar], dim=1)
        rows = self.scores.weighted_means(C)
        return rows[0], rows[1], a_bar

    @property
    def batch_size(self) -> int:
        return int(self.advantages.shape[0])


@dataclass
class Direction:
    """A search direction plus the diagnostics the agent logs under ``curvature/``."""

    vector: Tensor
    damping: float
    norm: float
    dFd: float
    """``d^T F d`` under the Fisher the backend solved with (the empirical Fisher of the batch unless
    the backend reports another, as CG on the KL Hessian does); used by the trust-region step rule."""
    ms: float
    """Time to produce the direction (``direction_ms``), without the optional diagnostic."""
    finite: bool
    cos_to_gradient: float = float("nan")
    extras: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        out = {
            "lambda": self.damping,
            "direction_norm": self.norm,
            "dFd": self.dFd,
            "direction_ms": self.ms,
            "cos_to_gradient": self.cos_to_gradient,
        }
        out.update(self.extras)
        return out


#: Step rules that choose the step length themselves: under them only a direction's *shape* acts.
LENGTH_FREE_STEP_RULES = ("trust_region", "line_search")


class Curvature(ABC):
    """Base class: a damped curvature approximation that turns ``g`` into a direction.

    Subclasses implement :meth:`solve`; stateful ones extend :meth:`state_dict` /
    :meth:`load_state_dict`. Every backend accepts ``damping`` (a number or a schedule) and
    ``diagnose_every`` (0: off; N: compare every N-th direction with the natural gradient).
    """

    name: ClassVar[str] = ""

    def __init__(self, damping: float | Schedule | dict = 0.1, diagnose_every: int = 0) -> None:
        self.damping: Schedule = as_schedule(damping, f"{self.name}.damping")
        check_int(f"{self.name}.diagnose_every", diagnose_every, 0, " (0 disables the diagnostic)")
        self.diagnose_every = diagnose_every
        self.num_updates = 0

    # The damping actually used at this update; the hybrid overrides it.
    def current_damping(self) -> float:
        return float(self.damping(self.num_updates))

    @abstractmethod
    def solve(self, batch: PolicyBatch, damping: float) -> tuple[Tensor, dict[str, float]]:
        """Return the flat direction and backend-specific diagnostics."""

    def diagnoses(self, update: int) -> bool:
        """Whether update number ``update`` (0-based) runs the natural-gradient diagnostic."""
        return self.diagnose_every > 0 and update % self.diagnose_every == 0

    def direction(self, batch: PolicyBatch) -> Direction:
        start = time.perf_counter()
        lam = self.current_damping()
        with torch.no_grad():
            vec, extras = self.solve(batch, lam)
            finite = bool(torch.isfinite(vec).all())
            # A backend that solved with another Fisher (CG on the KL Hessian) reports its own d^T F d.
            dFd = extras.pop("dFd", None)
            if dFd is None:
                dFd = float(batch.scores.quadratic(vec)) if finite else float("nan")
            g = batch.grad
            norm, g_norm, gd = (float(t) for t in torch.stack([vec.norm(), g.norm(), torch.dot(g, vec)]))
        _sync(vec)
        ms = (time.perf_counter() - start) * 1e3
        cos = gd / (norm * g_norm) if norm > 0 and g_norm > 0 else float("nan")
        if self.diagnoses(self.num_updates):
            start = time.perf_counter()
            with torch.no_grad():
                extras.update(natural_gradient_diagnostics(batch, vec, lam))
            _sync(vec)
            extras["diagnose_ms"] = (time.perf_counter() - start) * 1e3
        self.num_updates += 1
        return Direction(vec, lam, norm, dFd, ms, finite, cos, extras)

    def observe(self, *, kl: float, applied: bool, eta: float, surrogate_gain: float) -> None:
        r"""Feedback after the agent's step :math:`\theta + \eta d` (stateless backends ignore it).

        ``kl``: the measured mean KL(old || new); ``applied``: whether the step was kept; ``eta``: the
        step size actually applied; ``surrogate_gain``: the measured improvement of the importance-
        weighted surrogate. ``eta`` and ``surrogate_gain`` are nan when the step was not applied.
        """
        return None

    def advise(self, step_rule: str) -> str | None:
        """A one-line note when this configuration cannot do its job under ``step_rule``, else None
        (e.g. it is the identity backend up to scale under a step rule that sets the length).

        The trainer shows it once, as a warning, before training starts.
        """
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_updates = int(state["num_updates"])


def _sync(t: Tensor) -> None:
    """Wait for queued device work so that wall-clock times are real."""
    if t.is_cuda:
        torch.cuda.synchronize(t.device)


def check_int(key: str, value: Any, minimum: int, note: str = "") -> None:
    """One-line ``ValueError`` unless ``value`` is an int (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key}={value!r} must be an integer >= {minimum}{note}")


def check_number(key: str, value: Any, ok: Callable[[float], bool], expected: str) -> None:
    """One-line ``ValueError`` unless ``value`` is a real number (not a bool) with ``ok(value)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
        raise ValueError(f"{key}={value!r} must be {expected}")


REGISTRY: dict[str, type[Curvature]] = {}


def register(name: str) -> Callable[[type[Curvature]], type[Curvature]]:
    """Class decorator: make a backend available as ``curvature=<name>``."""

    def deco(cls: type[Curvature]) -> type[Curvature]:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"curvature backend {name!r} is registered twice")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return deco


def options(name: str) -> list[str]:
    """The keyword options a backend accepts."""
    sig = inspect.signature(REGISTRY[name].__init__)
    return [p for p in sig.parameters if p != "self"]


def build_curvature(name: str, **kwargs: Any) -> Curvature:
    """Instantiate a registered backend; bad names and options give a one-line ``ValueError``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown curvature backend {name!r}; valid: {', '.join(sorted(REGISTRY))}")
    valid = options(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"curvature {name!r} has no option(s) {unknown}; valid: {', '.join(valid)}")
    return REGISTRY[name](**kwargs)
