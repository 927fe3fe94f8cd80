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


def test_density_per_slot_averages_to_plan_density() -> None:
    from ragline.kernels import plan_banded, plan_block_sparse
    from ragline.kernels.density import plan_density, plan_density_per_slot

    t = 700
    lens = torch.tensor([t])
    dense = plan_banded(0, t, lens, t, torch.arange(2))
    # Whole 128-row diagonal blocks are counted, so "dense" is a little above 1 at this size.
    full = plan_density_per_slot(dense)
    assert full[0] == full[1] == plan_density(dense) >= 1.0
    idx = torch.full((1, 2, -(-t // 128), 4), -1)
    idx[0, 1, :, :3] = torch.arange(3)  # slot 1 reads three more blocks per query block
    plan = plan_block_sparse(idx, lens, t)
    per_slot = plan_density_per_slot(plan)
    assert per_slot[0] < per_slot[1] < full[0]
    assert math.isclose(plan_density(plan), sum(per_slot) / 2)


def test_calibration_compares_candidates_at_equal_measured_density() -> None:
    from ragline.attention.calibrate import VS_SCALES, calibrate_model

    g = torch.Generator().manual_seed(3)
    t = 2048
    # Random queries and keys scatter the estimated slashes: vertical-slash at its nominal
    # sizes costs far more than its budget, so only shrunken sizes may compete.
    layers = [[(torch.randn(1, 2, t, 64, generator=g), torch.randn(1, 1, t, 64, generator=g))]]
    config, report = calibrate_model(layers, "random", t, 0.3)
    cands = {c["pattern"]: c for c in report["candidates"]}
    a_shape = cands["a_shape"]["density"]
    assert cands[f"vertical_slash x{VS_SCALES[0]:g}"]["density"] > 1.1 * a_shape
    smallest = min(c["sizes"]["vertical"] for n, c in cands.items() if n.startswith("vertical"))
    for p in config.layers[0]:
        if isinstance(p, VerticalSlash):
            fitting = [
                c["sizes"]
                for n, c in cands.items()
                if n.startswith("vertical") and c["density"] <= 1.1 * a_shape
            ]
            assert {"vertical": p.vertical, "slash": p.slash} in fitting or p.vertical == smallest
    assert 0 < report["chosen_mean_density"] <= 1.0
    assert sum(report["chosen_patterns"].values()) == 2
