"""Extra oracle: curvlinops' empirical Fisher agrees with Scores' Fisher-vector products.

For a categorical policy, cross-entropy of the logits at the taken action is ``-log pi``, so its
per-sample gradient is ``-s_k`` and curvlinops' ``EFLinearOperator`` (mean reduction) is the
empirical Fisher ``F = S^T S / B``.
"""

from __future__ import annotations

import pytest
import torch

from ngac.curvature import build_curvature

from .conftest import Problem

curvlinops = pytest.importorskip("curvlinops")


def test_curvlinops_empirical_fisher_matches(categorical_problem: Problem) -> None:
    p = categorical_problem
    net = p.policy.net
    params = list(net.parameters())
    EF = curvlinops.EFLinearOperator(
        net, torch.nn.CrossEntropyLoss(reduction="mean"), params, [(p.obs, p.act.long())], check_deterministic=False
    )
    sc = p.batch().scores
    torch.manual_seed(0)
    V = torch.randn(p.d, 3, dtype=torch.float64)
    ours = torch.stack([sc.fisher_vector_product(V[:, j]) for j in range(3)], 1)
    theirs = EF @ V
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-11)
    # and our CG solve on that operator's dense matrix
    F = EF @ torch.eye(p.d, dtype=torch.float64)
    x = build_curvature("cg", damping=0.1, iters=4 * p.d, tol=1e-13).direction(p.batch()).vector
    torch.testing.assert_close(x, torch.linalg.solve(F + 0.1 * torch.eye(p.d, dtype=torch.float64), p.g), rtol=1e-7, atol=1e-9)
