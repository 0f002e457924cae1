"""Minibatch optimisation without a host sync per step: take every step, check the losses once.

An update of ``epochs x minibatches`` optimiser steps used to read each loss back to the host
(``loss.item()``) and, under data parallelism, vote across the ranks before each step, so that a
non-finite loss was never applied: 160 host syncs, and 160 collectives, per critic update at the
defaults. Here the steps run back to back, their losses stay on the device, and one check at the end
decides for the whole update. If any loss was non-finite (on any rank), :class:`Snapshot` puts the
parameters and the optimiser state back exactly as they were before the first step: the update is
discarded entirely, and a non-finite step is still never left applied.

With finite losses the arithmetic is the old loop's, step for step (``tests/agents/test_critic.py``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor


class Snapshot:
    """The values of ``params`` and of ``optimizer``'s state now; :meth:`restore` puts them back."""

    def __init__(self, params: Iterable[Tensor], optimizer: torch.optim.Optimizer) -> None:
        self.params = list(params)
        self.optimizer = optimizer
        with torch.no_grad():
            self.values = [p.detach().clone() for p in self.params]
        # Adam creates its state lazily at the first step: an empty state is restored as empty.
        self.state = {p: {k: _copy(v) for k, v in s.items()} for p, s in optimizer.state.items()}

    @torch.no_grad()
    def restore(self) -> None:
        for p, v in zip(self.params, self.values):
            p.copy_(v)
            p.grad = None
        self.optimizer.state.clear()
        self.optimizer.state.update({p: {k: _copy(v) for k, v in s.items()} for p, s in self.state.items()})


def _copy(v: object) -> object:
    return v.detach().clone() if isinstance(v, Tensor) else copy.deepcopy(v)


def all_finite(losses: list[Tensor]) -> tuple[bool, list[float]]:
    """One host sync for the whole update: (every loss finite, the losses as floats)."""
    if not losses:
        return True, []
    values = torch.stack(losses).tolist()
    return all(map(math.isfinite, values)), values


def fit_value(
    value_net: Callable[[Tensor], Tensor],
    optimizer: torch.optim.Optimizer,
    obs: Tensor,
    target: Tensor,
    epochs: int,
    minibatch_size: int,
    backward: Callable[[Tensor], None] = Tensor.backward,
) -> list[Tensor]:
    """``epochs`` passes of Adam (or any optimiser) over shuffled minibatches of the 0.5 * MSE to
    ``target``. Returns each step's loss, detached, still on the device: nothing here waits for it."""
    losses = []
    for _ in range(epochs):
        for idx in torch.randperm(target.shape[0], device=target.device).split(minibatch_size):
            loss = 0.5 * (value_net(obs[idx]).squeeze(-1) - target[idx]).pow(2).mean()
            optimizer.zero_grad()
            backward(loss)
            optimizer.step()
            losses.append(loss.detach())
    return losses
