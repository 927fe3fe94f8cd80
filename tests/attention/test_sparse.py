"""sparse_prefill_layer: heads of one layer on different block-sparse budgets each get their own."""

from __future__ import annotations

import math

import pytest
import torch

from ragline.attention.config import BlockSparse
from ragline.attention.patterns import block_sparse_indices
from ragline.attention.sparse import _layer, sparse_prefill_layer
from ragline.kernels import block_sparse_ref, plan_block_sparse

pytest.importorskip("triton")


def test_mixed_block_sparse_budgets_match_per_head_top_k() -> None:
    t, d = 1100, 64
    g = torch.Generator().manual_seed(5)
    q = torch.randn(1, 4, t, d, generator=g)
    k, v = torch.randn(1, 2, t, d, generator=g), torch.randn(1, 2, t, d, generator=g)
    budgets = [3, 6, 4, 3]
    lp = _layer([BlockSparse(top_k=n) for n in budgets], torch.device("cpu"))
    got = sparse_prefill_layer(q, k, v, lp, 1 / math.sqrt(d))
    lens = torch.tensor([t])
    for h, top_k in enumerate(budgets):
        idx = block_sparse_indices(q[:, h : h + 1], k[:, h // 2 : h // 2 + 1], top_k)
        want, _ = block_sparse_ref(q[:, h : h + 1], k[:, h // 2 : h // 2 + 1],
                                   v[:, h // 2 : h // 2 + 1], plan_block_sparse(idx, lens, t))  # fmt: skip
        torch.testing.assert_close(got[:, h : h + 1], want, atol=1e-4, rtol=1e-4)
