"""sparse_prefill_layer: every head of a mixed layer computes what calibration measured for it."""

from __future__ import annotations

import math

import pytest
import torch

from ragline.attention.config import AShape, BlockSparse, Dense, VerticalSlash
from ragline.attention.patterns import block_sparse_indices
from ragline.attention.sparse import _layer, sparse_prefill_layer
from ragline.kernels import block_sparse_ref, plan_banded, plan_block_sparse, vertical_slash_ref

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


def test_mixed_layer_heads_equal_their_calibration_plans() -> None:
    """Each head equals its own pattern's plan as `ragline calibrate` builds and scores it.

    Regression: a block-sparse head of `top_k=2` (the diagonal pair only; now refused by the
    config) lost its forced first block in the runtime while calibration kept it, so a
    calibrated SmolLM2 config with such heads diverged from dense (top-1 agreement 0.32) at a
    measured recall of 0.96. The runtime now keeps at least the first block whatever it is given.
    """
    from ragline.attention.calibrate import _plan
    from ragline.kernels import BlockSparsePlan, plan_banded, vertical_slash_ref

    t, d = 1300, 64
    g = torch.Generator().manual_seed(11)
    q = torch.randn(1, 8, t, d, generator=g)
    k, v = torch.randn(1, 2, t, d, generator=g), torch.randn(1, 2, t, d, generator=g)
    patterns = [
        BlockSparse(top_k=3), AShape(sinks=64, window=146), VerticalSlash(vertical=64, slash=132),
        BlockSparse(top_k=5), AShape(sinks=64, window=582), Dense(),
        VerticalSlash(vertical=175, slash=400), BlockSparse(top_k=10),
    ]  # fmt: skip
    lp = _layer(patterns, torch.device("cpu"), dense_kernel=True)
    # the density guard off: every head on its own pattern, however dense its plan
    got = sparse_prefill_layer(q, k, v, lp, 1 / math.sqrt(d), dense_above=float("inf"))
    lens = torch.tensor([t])
    for h, pattern in enumerate(patterns):
        qh, kh, vh = q[:, h : h + 1], k[:, h // 4 : h // 4 + 1], v[:, h // 4 : h // 4 + 1]
        if isinstance(pattern, Dense):
            plan = plan_banded(0, t, lens, t, torch.arange(1))
        else:
            plan = _plan(qh, kh, pattern)
        ref = block_sparse_ref if isinstance(plan, BlockSparsePlan) else vertical_slash_ref
        want, _ = ref(qh, kh, vh, plan)
        torch.testing.assert_close(got[:, h : h + 1], want, atol=1e-4, rtol=1e-4, msg=str(pattern))


@pytest.mark.parametrize("dense_kernel", [False, True])
def test_configured_dense_heads_take_sdpa_unless_kept_on_the_kernel(dense_kernel: bool) -> None:
    """A dense head goes to SDPA without a vertical-slash plan; the others keep their kernels.

    Before, a mixed layer built every dense head an all-diagonals plan, only for the density
    guard to send it to SDPA; that index work is gone, and an A-shape layer whose other heads
    are dense keeps its banded plan.
    """
    t, d = 700, 64
    g = torch.Generator().manual_seed(12)
    q = torch.randn(1, 4, t, d, generator=g)
    k, v = torch.randn(1, 2, t, d, generator=g), torch.randn(1, 2, t, d, generator=g)
    patterns = [Dense(), AShape(sinks=64, window=200), Dense(), AShape(sinks=64, window=200)]
    lp = _layer(patterns, torch.device("cpu"), dense_kernel=dense_kernel)
    if dense_kernel:
        assert lp.vs_heads.tolist() == [0, 1, 2, 3] and lp.band is None
    else:
        assert lp.sdpa_heads.tolist() == [0, 2] and lp.vs_heads.tolist() == [1, 3]
        assert lp.band == (64, 200)
    got = sparse_prefill_layer(q, k, v, lp, 1 / math.sqrt(d), dense_above=float("inf"))
    kv = torch.tensor([0, 0, 1, 1])
    want = torch.nn.functional.scaled_dot_product_attention(
        q, k[:, kv], v[:, kv], is_causal=True, scale=1 / math.sqrt(d)
    )
    for h in (0, 2):
        torch.testing.assert_close(got[:, h], want[:, h], atol=1e-4, rtol=1e-4)
    band = plan_banded(64, 200, torch.tensor([t]), t, torch.arange(1))
    for h in (1, 3):
        ref, _ = vertical_slash_ref(q[:, h : h + 1], k[:, h // 2 : h // 2 + 1],
                                    v[:, h // 2 : h // 2 + 1], band)  # fmt: skip
        torch.testing.assert_close(got[:, h : h + 1], ref, atol=1e-4, rtol=1e-4)
    assert (got[:, 1] - want[:, 1]).abs().max() > 1e-3  # the band really dropped keys


def test_runtime_keeps_dense_heads_on_the_kernel_only_without_a_guard() -> None:
    from ragline.attention.config import SparsePrefillConfig
    from ragline.attention.sparse import SparsePrefill

    cfg = SparsePrefillConfig(model="t", layers=[[Dense(), AShape(sinks=64, window=64)]])
    cpu = torch.device("cpu")
    assert SparsePrefill(cfg, min_len=1).layer(0, cpu).sdpa_heads.tolist() == [0]
    control = SparsePrefill(cfg, min_len=1, dense_above=float("inf")).layer(0, cpu)
    assert control.sdpa_heads.numel() == 0 and control.vs_heads.tolist() == [0, 1]
    # a dense plan measures a little over 1 (whole diagonal tiles): a guard of 1 still sends
    # dense heads straight to SDPA rather than building their plan first
    lax = SparsePrefill(cfg, min_len=1, dense_above=1.0).layer(0, cpu)
    assert lax.sdpa_heads.tolist() == [0]


def test_a_dense_layer_returns_sdpa_output() -> None:
    t, d = 300, 64
    g = torch.Generator().manual_seed(13)
    q = torch.randn(1, 4, t, d, generator=g)
    k, v = torch.randn(1, 2, t, d, generator=g), torch.randn(1, 2, t, d, generator=g)
    got = sparse_prefill_layer(q, k, v, _layer([Dense()] * 4, torch.device("cpu")), 0.125)
    want = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), is_causal=True, scale=0.125
    )
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("all_heads", [True, False])
def test_block_sparse_layer_through_the_top_k_kernel(
    monkeypatch: pytest.MonkeyPatch, all_heads: bool
) -> None:
    """The GPU index path (`row_topk` with candidates and counts) in a layer: the same attention
    as the torch path, for a layer of block-sparse heads and for block-sparse heads among others."""
    import ragline.attention.patterns as patterns

    t, d = 1100, 64
    g = torch.Generator().manual_seed(8)
    q = torch.randn(1, 4, t, d, generator=g)
    k, v = torch.randn(1, 2, t, d, generator=g), torch.randn(1, 2, t, d, generator=g)
    heads = [BlockSparse(top_k=5)] * 4 if all_heads else [
        AShape(sinks=64, window=200), BlockSparse(top_k=5), Dense(), BlockSparse(top_k=5)
    ]  # fmt: skip
    lp = _layer(heads, torch.device("cpu"))
    assert lp.bs_all == all_heads
    want = sparse_prefill_layer(q, k, v, lp, 1 / math.sqrt(d))
    monkeypatch.setattr(patterns, "_row_topk_kernel_for", lambda q, width: True)
    got = sparse_prefill_layer(q, k, v, lp, 1 / math.sqrt(d))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
