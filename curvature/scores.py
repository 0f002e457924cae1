r"""Per-sample scores captured in one backward pass, without a ``B x d`` matrix.

Every curvature backend needs quantities built from the per-sample scores
:math:`s_k = \nabla_\theta \log \pi_\theta(a_k \mid o_k)`, :math:`k = 1..B`:

* the policy gradient :math:`g = \frac1B \sum_k A_k s_k`;
* per-sample squared norms :math:`|s_k|^2` (single-sample Sherman-Morrison);
* the diagonal of the empirical Fisher :math:`\frac1B \sum_k s_k \odot s_k`;
* Kronecker factors :math:`A = E[a a^T]`, :math:`G = E[\delta \delta^T]` (K-FAC);
* Fisher-vector products :math:`F v = \frac1B \sum_k s_k (s_k \cdot v)` (CG).

For a ``Linear`` layer with (bias-augmented) input :math:`a_k` and output gradient
:math:`\delta_k = \partial \log\pi_k / \partial z_k`, the per-sample weight gradient is
the outer product :math:`\delta_k a_k^T`. All the quantities above are then small matrix
products of the stacked :math:`a` (``B x in``) and :math:`\delta` (``B x out``):

.. math::

    \sum_k c_k s_k = (\delta \odot c)^T a, \qquad
    s_k \cdot V = \sum_{ij} \delta_{ki} V_{ij} a_{kj}, \qquad
    |s_k|^2 = |a_k|^2 |\delta_k|^2, \qquad
    \sum_k s_k \odot s_k = (\delta^2)^T (a^2).

A parameter shared by every sample (a state-independent log-std, :class:`BroadcastParameter`)
is the special case :math:`a_k = 1`.

The hooks that record :math:`a` and :math:`\delta` exist only inside
:meth:`Scores.capture`: a rollout or the advantage-weighted backward never touches them.

Data parallelism: every batch *statistic* (a mean over samples: :meth:`Scores.weighted_mean`,
:meth:`Scores.mean`, :meth:`Scores.fisher_vector_product`, :meth:`Scores.quadratic`,
:meth:`Scores.diagonal`, :meth:`Scores.kronecker_factors`, :meth:`Scores.batch_mean`) passes through
``all_mean`` ("average this tensor across data-parallel ranks"), so with equal per-rank batch sizes
it is the statistic of the concatenated batch. Per-sample quantities (:meth:`Scores.dot`,
:meth:`Scores.sq_norms`) and the raw local sum :meth:`Scores.weighted_sum` are not reduced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn


class BroadcastParameter(nn.Module):
    """A parameter shared by every sample, e.g. a state-independent Gaussian log-std.

    ``forward(x)`` returns the parameter broadcast to ``x.shape[:-1] + param.shape``, which lets
    :class:`Scores` read its per-sample gradient straight off the output gradient.
    """

    def __init__(self, shape: int | Sequence[int], init: float = 0.0) -> None:
        super().__init__()
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.param = nn.Parameter(torch.full(shape, float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return self.param.expand(*x.shape[:-1], *self.param.shape)


SUPPORTED_MODULES: tuple[type[nn.Module], ...] = (nn.Linear, BroadcastParameter)


@dataclass
class _Slot:
    """Where one parameter sits inside its layer's ``out x in'`` gradient matrix."""

    layer: int
    kind: str  # "weight", "bias" or "full"
    offset: int  # offset in the flat vector
    numel: int
    shape: torch.Size


def gram(x: Tensor, block_from: int = 256) -> Tensor:
    r""":math:`x^T x` for ``x`` of shape ``[B, n]``, using its symmetry.

    For ``n >= block_from`` the columns are split in two halves :math:`x = [x_1, x_2]` and only
    :math:`x_1^T x_1`, :math:`x_1^T x_2`, :math:`x_2^T x_2` are multiplied: 3/4 of the flops of one
    product (measured 19 % faster at n = 537, B = 1000 on one CPU thread). Smaller ``n``: one product.
    """
    n = x.shape[1]
    if n < block_from:
        return x.T @ x
    h = n // 2
    x1, x2 = x[:, :h], x[:, h:]
    top = x1.T @ x2
    return torch.cat([torch.cat([x1.T @ x1, top], 1), torch.cat([top.T, x2.T @ x2], 1)], 0)


class Scores:
    r"""Per-sample scores of a policy, stored as per-layer ``(a, delta)`` pairs.

    Vectors are flat, in the order of ``params`` (as :func:`torch.nn.utils.parameters_to_vector`).
    Build with :meth:`capture`.
    """

    def __init__(
        self,
        params: list[Tensor],
        a: list[Tensor],
        delta: list[Tensor],
        has_bias: list[bool],
        slots: list[_Slot],
        all_mean: Callable[[Tensor], Tensor] | None = None,
    ):
        self.params = params
        self.all_mean = all_mean  # None: a single process
        self.has_bias = has_bias  # per layer: is the last column of ``a`` the bias column of ones
        self.a = a  # per layer: [B, in'] (bias column of ones appended where the layer has a bias)
        self.delta = delta  # per layer: [B, out]
        self.slots = slots
        self.batch_size = a[0].shape[0] if a else 0
        self.dim = sum(s.numel for s in slots)

    # ------------------------------------------------------------------ capture
    @classmethod
    def capture(
        cls,
        policy: nn.Module,
        log_prob_fn: Callable[[], Tensor],
        params: list[Tensor] | None = None,
        all_mean: Callable[[Tensor], Tensor] | None = None,
    ) -> Scores:
        """Run ``log_prob_fn`` once under recording hooks and backpropagate ``sum_k log pi_k``.

        ``log_prob_fn`` must return the per-sample log-probabilities, shape ``[B]``. Every
        parameter in ``params`` must belong to a supported module (``nn.Linear`` or
        :class:`BroadcastParameter`) that is called exactly once on a ``[B, features]`` input.
        """
        params = [p for p in policy.parameters() if p.requires_grad] if params is None else list(params)
        owner: dict[int, tuple[int, str]] = {}
        modules: list[nn.Module] = []
        for module in policy.modules():
            if isinstance(module, SUPPORTED_MODULES):
                if any(p.requires_grad for p in module.parameters(recurse=False)):
                    for pname, p in module.named_parameters(recurse=False):
                        owner[id(p)] = (len(modules), pname)
                    modules.append(module)
        for name, p in policy.named_parameters():
            if p.requires_grad and id(p) not in owner and any(p is q for q in params):
                raise TypeError(
                    f"parameter {name!r} sits in an unsupported module; per-sample scores support "
                    f"{[m.__name__ for m in SUPPORTED_MODULES]}"
                )

        inputs: list[list[Tensor]] = [[] for _ in modules]
        outputs: list[list[Tensor]] = [[] for _ in modules]
        versions: list[list[int]] = [[] for _ in modules]

        def make_hook(i: int):
            def hook(mod: nn.Module, args: tuple, out: Tensor) -> None:
                inputs[i].append(args[0].detach())
                outputs[i].append(out)
                versions[i].append(out._version)

            return hook

        handles = [m.register_forward_hook(make_hook(i)) for i, m in enumerate(modules)]
        try:
            with torch.enable_grad():
                logp = log_prob_fn()
                total = logp.sum()
        finally:
            for h in handles:
                h.remove()
        if logp.dim() != 1:
            raise ValueError(f"log_prob_fn must return per-sample log-probs of shape [B], got {tuple(logp.shape)}")
        batch = logp.shape[0]
        used = [i for i in range(len(modules)) if outputs[i]]
        for i in used:
            if outputs[i][0]._version != versions[i][0]:
                raise ValueError(
                    f"the output of {modules[i]} was modified in place after the forward (e.g. ReLU(inplace=True)); "
                    f"its output gradient would be wrong: use out-of-place activations"
                )
            if len(outputs[i]) > 1:
                raise ValueError(
                    f"module {modules[i]} was called {len(outputs[i])} times; per-sample scores need one call"
                )
            if inputs[i][0].dim() != 2 and not isinstance(modules[i], BroadcastParameter):
                raise ValueError(
                    f"module {modules[i]} got a {inputs[i][0].dim()}-d input; flatten the batch to [B, features]"
                )
        with torch.enable_grad():
            deltas = torch.autograd.grad(
                total, [outputs[i][0] for i in used], allow_unused=True, materialize_grads=True
            )
        delta_of = dict(zip(used, deltas))

        a_list: list[Tensor] = []
        d_list: list[Tensor] = []
        bias_list: list[bool] = []
        layer_index: dict[int, int] = {}
        for i, module in enumerate(modules):
            if isinstance(module, BroadcastParameter):
                numel = module.param.numel()
                dt = module.param.dtype
                dev = module.param.device
                a = torch.ones(batch, 1, dtype=dt, device=dev)
                d = (
                    delta_of[i].reshape(batch, numel)
                    if i in delta_of
                    else torch.zeros(batch, numel, dtype=dt, device=dev)
                )
            else:
                lin: nn.Linear = module  # type: ignore[assignment]
                if i in delta_of:
                    x = inputs[i][0]
                    a = torch.cat([x, x.new_ones(batch, 1)], dim=1) if lin.bias is not None else x
                    d = delta_of[i]
                else:  # layer not used by log_prob_fn: zero scores
                    width = lin.in_features + (lin.bias is not None)
                    a = lin.weight.new_zeros(batch, width)
                    d = lin.weight.new_zeros(batch, lin.out_features)
            layer_index[i] = len(a_list)
            bias_list.append(isinstance(module, nn.Linear) and module.bias is not None)
            a_list.append(a)
            d_list.append(d)

        slots: list[_Slot] = []
        offset = 0
        for p in params:
            if id(p) not in owner:
                raise TypeError("a parameter in `params` is not owned by a supported module of `policy`")
            mi, pname = owner[id(p)]
            kind = "full" if isinstance(modules[mi], BroadcastParameter) else pname
            slots.append(_Slot(layer_index[mi], kind, offset, p.numel(), p.shape))
            offset += p.numel()
        return cls(params, a_list, d_list, bias_list, slots, all_mean)

    # ------------------------------------------------------------ layout helpers
    def to_layers(self, v: Tensor) -> list[Tensor]:
        """Flat vector -> per-layer ``out x in'`` matrices (zero where no parameter maps)."""
        mats = [v.new_zeros(d.shape[1], a.shape[1]) for a, d in zip(self.a, self.delta)]
        for s in self.slots:
            chunk = v[s.offset : s.offset + s.numel]
            m = mats[s.layer]
            if s.kind == "weight":
                m[:, : m.shape[1] - self.has_bias[s.layer]] = chunk.view(m.shape[0], -1)
            elif s.kind == "bias":
                m[:, -1] = chunk
            else:
                m[:, 0] = chunk
        return mats

    def to_flat(self, mats: list[Tensor]) -> Tensor:
        """Per-layer ``[..., out, in']`` matrices -> flat ``[..., d]`` vectors in ``params`` order."""
        lead = mats[0].shape[:-2]
        parts = []
        for s in self.slots:
            m = mats[s.layer]
            if s.kind == "weight":
                w = m[..., :-1] if self.has_bias[s.layer] else m
                parts.append(w.reshape(*lead, -1))
            elif s.kind == "bias":
                parts.append(m[..., -1])
            else:
                parts.append(m[..., 0])
        return torch.cat(parts, dim=-1)

    def to_params(self, v: Tensor) -> list[Tensor]:
        """Flat vector -> list of tensors shaped like ``params``."""
        return [v[s.offset : s.offset + s.numel].view(s.shape) for s in self.slots]

    # -------------------------------------------------------------- quantities
    def reduce(self, t: Tensor) -> Tensor:
        """``all_mean(t)``: average a batch statistic across data-parallel ranks (identity if single)."""
        return t if self.all_mean is None else self.all_mean(t)

    def batch_mean(self, t: Tensor) -> Tensor:
        """Mean over the (global) batch of per-sample values ``t`` (first dimension ``B``)."""
        return self.reduce(t.mean(dim=0))

    def weighted_sum(self, c: Tensor) -> Tensor:
        r""":math:`\sum_k c_k s_k` over the *local* batch, as a flat vector (not reduced)."""
        return self.to_flat([(d * c[:, None]).T @ a for a, d in zip(self.a, self.delta)])

    def weighted_mean(self, c: Tensor) -> Tensor:
        r""":math:`\frac1B \sum_k c_k s_k` over the global batch (reduced)."""
        return self.reduce(self.weighted_sum(c) / self.batch_size)

    def weighted_means(self, C: Tensor) -> Tensor:
        r"""Rows :math:`\frac1B \sum_k C_{kj} s_k`, ``[m, d]`` for ``C`` of shape ``[B, m]``, with one
        ``all_mean`` for all of them. (One stacked ``(m\,out) x B x in'`` product per layer was measured
        no faster than ``m`` separate ones on CPU: the products are compute-bound.)"""
        rows = torch.stack([self.weighted_sum(C[:, j]) for j in range(C.shape[1])])
        return self.reduce(rows / self.batch_size)

    def mean(self) -> Tensor:
        r"""The batch-mean score :math:`\bar s = \frac1B \sum_k s_k` (reduced)."""
        return self.weighted_mean(self.a[0].new_ones(self.batch_size))

    def dot(self, v: Tensor) -> Tensor:
        r"""Per-sample directional derivatives :math:`s_k \cdot v`, shape ``[B]`` (local)."""
        out = None
        for a, d, m in zip(self.a, self.delta, self.to_layers(v)):
            term = ((d @ m) * a).sum(dim=1)
            out = term if out is None else out + term
        return out

    def fisher_vector_product(self, v: Tensor) -> Tensor:
        r"""Empirical Fisher times ``v``: :math:`\frac1B \sum_k s_k (s_k \cdot v)` (reduced)."""
        return self.weighted_mean(self.dot(v))

    def quadratic(self, v: Tensor) -> Tensor:
        r""":math:`v^T F v = \frac1B \sum_k (s_k \cdot v)^2` (reduced)."""
        return self.batch_mean(self.dot(v).pow(2))

    def sq_norms(self) -> Tensor:
        r"""Per-sample squared norms :math:`|s_k|^2`, shape ``[B]`` (local)."""
        out = None
        for a, d in zip(self.a, self.delta):
            term = a.pow(2).sum(1) * d.pow(2).sum(1)
            out = term if out is None else out + term
        return out

    def diagonal(self) -> Tensor:
        r"""Diagonal of the empirical Fisher, :math:`\frac1B \sum_k s_k \odot s_k` (reduced)."""
        return self.reduce(self.to_flat([d.pow(2).T @ a.pow(2) / self.batch_size for a, d in zip(self.a, self.delta)]))

    def kronecker_factors(self) -> list[tuple[Tensor, Tensor]]:
        r"""Per layer :math:`(A, G) = (\frac1B a^T a, \frac1B \delta^T \delta)` (reduced in one call)."""
        b = self.batch_size
        local = [f for a, d in zip(self.a, self.delta) for f in (gram(a) / b, gram(d) / b)]
        if self.all_mean is not None:
            flat = self.all_mean(torch.cat([f.reshape(-1) for f in local]))
            local = [chunk.view_as(f) for chunk, f in zip(flat.split([f.numel() for f in local]), local)]
        return list(zip(local[0::2], local[1::2]))

    def sample_gram(self, block_from: int = 512) -> Tensor:
        r"""The ``B x B`` Gram of the per-sample scores, :math:`K_{ij} = s_i \cdot s_j` (local), without ``S``:

        .. math:: K = \sum_\text{layers} (a a^T) \odot (\delta \delta^T),

        since :math:`\langle \delta_i a_i^T, \delta_j a_j^T \rangle = (a_i \cdot a_j)(\delta_i \cdot \delta_j)`.
        Only the columns of ``a`` whose parameters are in ``params`` count (a layer whose bias is frozen
        drops its column of ones). O(B^2 (in + out)) per layer; for ``B >= block_from`` only the upper
        2 x 2 row blocks are multiplied and the lower one mirrored (3/4 of the flops).
        """
        layers = [(a if cols.all() else a[:, cols], d) for a, d, cols in self._used_layers()]
        n = self.batch_size
        if not layers:
            return self.a[0].new_zeros(n, n)

        def block(rows: slice, cols: slice) -> Tensor:
            return sum((a[rows] @ a[cols].T) * (d[rows] @ d[cols].T) for a, d in layers)

        if n < block_from:
            return block(slice(None), slice(None))
        top, bottom = slice(0, n // 2), slice(n // 2, n)
        upper = block(top, bottom)
        return torch.cat([torch.cat([block(top, top), upper], 1), torch.cat([upper.T, block(bottom, bottom)], 1)], 0)

    def _used_layers(self) -> list[tuple[Tensor, Tensor, Tensor]]:
        """``(a, delta, used columns of a)`` for every layer with a parameter in ``params``."""
        out = []
        for layer, (a, d) in enumerate(zip(self.a, self.delta)):
            cols = self._columns(layer)
            if cols is not None:
                out.append((a, d, cols))
        return out

    def _columns(self, layer: int) -> Tensor | None:
        """Which columns of layer ``layer``'s ``a`` belong to a parameter in ``params`` (None: none)."""
        kinds = {s.kind for s in self.slots if s.layer == layer}
        if not kinds:
            return None
        width = self.a[layer].shape[1]
        cols = torch.zeros(width, dtype=torch.bool)
        if "weight" in kinds:
            cols[: width - self.has_bias[layer]] = True
        if "bias" in kinds or "full" in kinds:
            cols[-1] = True
        return cols.to(self.a[layer].device)

    def replace(self, a: list[Tensor], delta: list[Tensor]) -> Scores:
        """The same parameters and layout with other per-layer ``(a, delta)``, as a single process
        (``all_mean`` None): e.g. every rank's samples gathered, a subset of rows, or another dtype."""
        return Scores(self.params, a, delta, self.has_bias, self.slots, None)

    def dense(self) -> Tensor:
        """The ``B x d`` per-sample score matrix. O(B d) memory: tests and dense mode only."""
        rows = [torch.einsum("bo,bi->boi", d, a) for a, d in zip(self.a, self.delta)]
        b = self.batch_size
        cols = []
        for s in self.slots:
            r = rows[s.layer]
            if s.kind == "weight":
                w = r[:, :, :-1] if self.has_bias[s.layer] else r
                cols.append(w.reshape(b, -1))
            elif s.kind == "bias":
                cols.append(r[:, :, -1])
            else:
                cols.append(r[:, :, 0])
        return torch.cat(cols, dim=1)
