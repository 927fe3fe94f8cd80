"""Calibration recall equals the softmax mass under the kernels' masks, computed the long way."""

from __future__ import annotations

import math

import pytest
import torch

from ragline.attention.calibrate import (
    _plan,
    attention_recall,
    candidates_for_budget,
    recall_and_tail,
)
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
    whole, tail = recall_and_tail(q, k, plans, 40)
    torch.testing.assert_close(whole, got)
    s = q[0] @ k[0].transpose(-1, -2) / math.sqrt(64)
    causal = torch.ones(333, 333, dtype=torch.bool).tril()
    p = torch.softmax(s.masked_fill(~causal, float("-inf")), -1)
    for i, plan in enumerate(plans):
        fn = block_sparse_mask if isinstance(plan, BlockSparsePlan) else vertical_slash_mask
        mask = torch.stack([fn(plan, 0, h) for h in range(3)])
        torch.testing.assert_close(got[i], (p * mask).sum(-1).mean(-1), atol=1e-4, rtol=1e-4)
        want_tail = (p * mask).sum(-1)[:, -40:].mean(-1)
        torch.testing.assert_close(tail[i], want_tail, atol=1e-4, rtol=1e-4)


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


def test_allocation_spends_the_budget_where_recall_gains_most() -> None:
    from ragline.attention.calibrate import allocate_budget

    # head 0 gains 0.5 recall for 0.1 more density; head 1 only 0.1 for 0.8 more
    recall = torch.tensor([[0.5, 1.0], [0.9, 1.0]])
    density = torch.tensor([[0.1, 0.2], [0.1, 0.9]])
    assert allocate_budget(recall, density, 0.15).tolist() == [1, 0]
    assert allocate_budget(recall, density, 0.55).tolist() == [1, 1]
    # below the cheapest options: the cheapest, whatever the budget says
    assert allocate_budget(recall, density, 0.05).tolist() == [0, 0]


def test_allocation_is_optimal_on_small_random_problems() -> None:
    import itertools

    from ragline.attention.calibrate import allocate_budget

    g = torch.Generator().manual_seed(7)
    for _ in range(30):
        density = torch.rand(4, 3, generator=g).sort(1).values
        recall = torch.rand(4, 3, generator=g).sort(1).values
        budget = float(torch.rand(1, generator=g)) * 0.8 + 0.1
        choice = allocate_budget(recall, density, budget)
        rows = torch.arange(4)
        if float(density[:, 0].mean()) > budget:
            assert choice.tolist() == [0] * 4
            continue
        assert float(density[rows, choice].mean()) <= budget + 1e-9
        best = max(
            float(recall[rows, torch.tensor(c)].sum())
            for c in itertools.product(range(3), repeat=4)
            if float(density[rows, torch.tensor(c)].mean()) <= budget + 1e-9
        )
        # the Lagrangian plus greedy fill is near-optimal, not exact, on a knapsack
        assert float(recall[rows, choice].sum()) >= best - 0.25


def test_calibration_shares_one_budget_across_heads() -> None:
    from ragline.attention.calibrate import calibrate_model, candidate_grid

    g = torch.Generator().manual_seed(3)
    t = 1024
    q, k = torch.randn(1, 2, t, 64, generator=g), torch.randn(1, 1, t, 64, generator=g)
    # head 1 attends only to the previous few keys: a short window holds all its mass
    k_loc = k.clone()
    q[0, 1] = k_loc[0, 0] * 8.0
    layers = [[(q, k_loc), (torch.randn(1, 2, t, 64, generator=g), k)]]  # one sample, 2 layers
    budget = 0.4
    config, report = calibrate_model(layers, "random", t, budget)
    names = [c.name for c in candidate_grid(t, budget)]
    assert [c["pattern"] for c in report["candidates"]] == names
    assert names[-1] == "dense" and len(set(names)) == len(names)
    assert report["chosen_mean_density"] <= budget + 1e-6
    assert sum(report["chosen_patterns"].values()) == 4
    assert sum(c["heads_chosen"] for c in report["candidates"]) == 4
    # never worse than the best single candidate that fits the budget for every head
    fitting = [c["mean_recall"] for c in report["candidates"] if c["density"] <= budget]
    assert report["chosen_mean_recall"] >= max(fitting) - 1e-6
    for layer in config.layers:
        assert all(p.recall is not None and 0 < p.recall <= 1.0 for p in layer)
    # the local head needs the least: it gets no more keys than any other head
    local = config.layers[0][1]
    assert local.recall is not None and local.recall > 0.99


def test_tail_weight_trades_mean_recall_for_the_last_rows() -> None:
    from ragline.attention.calibrate import calibrate_model

    g = torch.Generator().manual_seed(4)
    t = 1024
    layers = [[(torch.randn(1, 4, t, 64, generator=g), torch.randn(1, 1, t, 64, generator=g))]]
    _, plain = calibrate_model(layers, "random", t, 0.4)
    _, tailed = calibrate_model(layers, "random", t, 0.4, tail_weight=1.0)
    assert tailed["chosen_tail_recall"] >= plain["chosen_tail_recall"] - 1e-6
    assert plain["chosen_mean_recall"] >= tailed["chosen_mean_recall"] - 1e-6
    assert tailed["tail_weight"] == 1.0 and tailed["chosen_mean_density"] <= 0.4 + 1e-6


def test_mask_path_equals_the_kernels_lse_path(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(5)
    t = 461  # odd: a short last query block and a row chunk that ends mid-block
    q, k = torch.randn(1, 4, t, 64, generator=g), torch.randn(1, 2, t, 64, generator=g)
    plans = [_plan(q, k, p) for p in (AShape(sinks=64, window=90), VerticalSlash(vertical=40, slash=70), BlockSparse(top_k=4))]  # fmt: skip
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the kernels, through the interpreter
    by_kernel = recall_and_tail(q, k, plans, 33)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    by_masks = recall_and_tail(q, k, plans, 33)
    for a, b in zip(by_kernel, by_masks, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_recall_takes_head_dims_the_kernels_do_not() -> None:
    g = torch.Generator().manual_seed(6)
    t, d = 300, 256
    q, k = torch.randn(1, 2, t, d, generator=g), torch.randn(1, 1, t, d, generator=g)
    plan = _plan(q, k, AShape(sinks=64, window=64))
    whole, _ = recall_and_tail(q, k, [plan], 10)
    s = q[0] @ k[0].transpose(-1, -2) / math.sqrt(d)
    p = torch.softmax(s.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf")), -1)
    mask = torch.stack([vertical_slash_mask(plan, 0, h) for h in range(2)])
    torch.testing.assert_close(whole[0], (p * mask).sum(-1).mean(-1), atol=1e-4, rtol=1e-4)


def test_layers_left_out_of_calibration_are_written_dense() -> None:
    from ragline.attention.calibrate import calibrate_model
    from ragline.attention.config import Dense

    g = torch.Generator().manual_seed(7)
    t = 512
    layers = [[(torch.randn(1, 2, t, 64, generator=g), torch.randn(1, 1, t, 64, generator=g))]]
    config, report = calibrate_model(layers, "m", t, 0.5, layer_ids=[2], num_layers=4)
    assert sum(report["chosen_patterns"].values()) == 2  # the calibrated layer's heads only
    config.check_shape(4, 2)
    assert all(isinstance(p, Dense) for i in (0, 1, 3) for p in config.layers[i])
    assert all(p.recall is not None for p in config.layers[2])
    for bad in ([5], [-1]):
        with pytest.raises(ValueError, match="layer_ids"):
            calibrate_model(layers, "m", t, 0.5, layer_ids=bad, num_layers=4)
    with pytest.raises(ValueError, match="layer_ids"):
        calibrate_model(layers * 1, "m", t, 0.5, layer_ids=[2])
    two = [[layers[0][0], layers[0][0]]]
    with pytest.raises(ValueError, match="each once"):
        calibrate_model(two, "m", t, 0.5, layer_ids=[1, 1], num_layers=4)
