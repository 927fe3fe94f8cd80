"""Calibration recall equals the softmax mass under the kernels' masks, computed the long way."""

from __future__ import annotations

import math

import torch

from ragline.attention.calibrate import _plan, attention_recall, candidates_for_budget
from ragline.attention.config import AShape, BlockSparse, VerticalSlash
from ragline.kernels import BlockSparsePlan
from ragline.kernels.block_sparse import block_sparse_mask
from ragline.kernels.vertical_slash import vertical_slash_mask


def test_recall_from_lse_equals_mass_under_the_mask() -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 3, 333, 64, generator=g), torch.randn(1, 1, 333, 64, generator=g)
    patterns = [
        AShape(sinks=64, window=100),
        VerticalSlash(vertical=50, slash=60),
        BlockSparse(top_k=3),
    ]
    plans = [_plan(q, k, p) for p in patterns]
    got = attention_recall(q, k, plans)
    s = q[0] @ k[0].transpose(-1, -2) / math.sqrt(64)
    causal = torch.ones(333, 333, dtype=torch.bool).tril()
    p = torch.softmax(s.masked_fill(~causal, float("-inf")), -1)
    for i, plan in enumerate(plans):
        fn = block_sparse_mask if isinstance(plan, BlockSparsePlan) else vertical_slash_mask
        mask = torch.stack([fn(plan, 0, h) for h in range(3)])
        torch.testing.assert_close(got[i], (p * mask).sum(-1).mean(-1), atol=1e-4, rtol=1e-4)


def test_candidates_share_one_budget() -> None:
    a, vs, bs = (c.pattern for c in candidates_for_budget(8192, 0.15))
    assert isinstance(a, AShape) and isinstance(vs, VerticalSlash) and isinstance(bs, BlockSparse)
    keys = 0.15 * 8192 / 2
    assert abs(a.sinks + a.window - keys) <= 1
    assert abs(vs.vertical + vs.slash - keys) <= 1
    assert abs(bs.top_k * 64 - keys) <= 64
