"""Online index builders: vectorised statistics equal the loop references; budgets and forcing hold."""

from __future__ import annotations

import pytest
import torch

from ragline.attention.patterns import (
    a_shape_indices,
    block_sparse_indices,
    block_sparse_scores,
    block_sparse_scores_ref,
    vertical_slash_indices,
    vertical_slash_scores,
    vertical_slash_scores_ref,
)


@pytest.mark.parametrize(("t", "seq_len", "group"), [(300, 300, 2), (257, 200, 1), (70, 70, 4)])
def test_vertical_slash_scores_match_loops(t: int, seq_len: int, group: int) -> None:
    g = torch.Generator().manual_seed(t)
    q = torch.randn(2, 4, t, 64, generator=g)
    k = torch.randn(2, 4 // group, t, 64, generator=g)
    got = vertical_slash_scores(q, k, seq_len, last_q=16)
    ref = vertical_slash_scores_ref(q, k, seq_len, last_q=16)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # every query row's weights sum to one: the column sums and diagonal sums both total 16
    torch.testing.assert_close(got[0].sum(-1), torch.full((2, 4), 16.0))
    torch.testing.assert_close(got[1].sum(-1), torch.full((2, 4), 16.0))


# Here a query head's scores and weights take 2 * 2 sequences * 16 rows * (77 + 15) columns * 4
# bytes, a key head 2 sequences * 77 keys * 64 dims * 6 bytes. None: every key head in one product;
# one key head and two query heads' worth: a key head with its two query heads per product; 1: one
# query head per product.
_PER_QUERY, _PER_KEY = 2 * 2 * 16 * 92 * 4, 2 * 77 * 64 * 6


@pytest.mark.parametrize("chunk_bytes", [None, _PER_KEY + 2 * _PER_QUERY, 1])
def test_vertical_slash_scores_of_chosen_heads_and_key_map(
    monkeypatch: pytest.MonkeyPatch, chunk_bytes: int | None
) -> None:
    """Listed query heads in any order, any key-head map, any batching of the products."""
    import ragline.attention.patterns as patterns

    if chunk_bytes is not None:
        monkeypatch.setattr(patterns, "_CHUNK_BYTES", chunk_bytes)
    g = torch.Generator().manual_seed(7)
    q = torch.randn(2, 6, 90, 64, generator=g)
    k = torch.randn(2, 3, 90, 64, generator=g)
    for kv_index, heads in (
        ([2, 0, 1, 1, 0, 2], [4, 0, 3, 5]),  # key heads serve 1 or 2 listed heads: one per batch
        ([0, 0, 1, 1, 2, 2], [5, 4, 1, 0, 3, 2]),  # every key head serves two
        (torch.tensor([1, 1, 0, 2, 2, 0]), None),
    ):
        got = patterns.vertical_slash_scores(q, k, 77, last_q=16, kv_index=kv_index, heads=heads)
        # the loop reference on keys repeated per query head (a group of one)
        ref = vertical_slash_scores_ref(q, k[:, torch.as_tensor(kv_index)], 77, last_q=16)
        pick = list(range(6)) if heads is None else heads
        for a, b in zip(got, ref, strict=True):
            torch.testing.assert_close(a, b[:, pick], atol=1e-5, rtol=1e-5)


def test_vertical_slash_scores_of_one_row() -> None:
    q, k = torch.randn(1, 2, 5, 64), torch.randn(1, 1, 5, 64)
    for got, ref in zip(
        vertical_slash_scores(q, k, 1), vertical_slash_scores_ref(q, k, 1), strict=True
    ):
        torch.testing.assert_close(got, ref)
    assert vertical_slash_scores(q, k, 3, heads=[])[0].shape == (1, 0, 5)


def test_vertical_slash_indices_of_queries_that_track_gradients() -> None:
    """A model called without no_grad: the statistics are computed, not differentiated."""
    q = torch.randn(1, 4, 200, 64, requires_grad=True)
    v_idx, s_idx = vertical_slash_indices(q, torch.randn(1, 2, 200, 64), 100, 100)
    assert v_idx.shape == s_idx.shape == (1, 4, 100)


def test_vertical_slash_scores_refuse_bad_head_maps() -> None:
    q, k = torch.randn(1, 4, 40, 64), torch.randn(1, 2, 40, 64)
    with pytest.raises(ValueError, match="kv_index"):
        vertical_slash_scores(q, k, 40, kv_index=[0, 1, 2, 0])
    with pytest.raises(ValueError, match="kv_index"):
        vertical_slash_scores(q, k, 40, kv_index=[0, 1])
    with pytest.raises(ValueError, match="heads"):
        vertical_slash_scores(q, k, 40, heads=[4])


def test_vertical_slash_indices_budgets_and_forcing() -> None:
    q, k = torch.randn(1, 2, 500, 64), torch.randn(1, 1, 500, 64)
    v_idx, s_idx = vertical_slash_indices(q, k, 100, 150, sinks=10, local=20)
    assert v_idx.shape == (1, 2, 100) and s_idx.shape == (1, 2, 150)
    for h in range(2):
        assert set(range(10)) <= set(v_idx[0, h].tolist())
        assert set(range(20)) <= set(s_idx[0, h].tolist())
        assert len(set(v_idx[0, h].tolist())) == 100
    v_short, _ = vertical_slash_indices(q[:, :, :50], k[:, :, :50], 100, 150)
    assert v_short.shape[-1] == 50


def test_vertical_slash_finds_planted_structure() -> None:
    t, d = 512, 64
    q = torch.randn(1, 1, t, d) * 0.1
    k = torch.randn(1, 1, t, d) * 0.1
    k[0, 0, 300] = q[0, 0, -64:].mean(0) * 200  # a column every late query attends
    v_idx, _ = vertical_slash_indices(q, k, 70, 64, sinks=64, local=64)
    assert 300 in v_idx[0, 0].tolist()


def test_block_sparse_scores_match_loops() -> None:
    q, k = torch.randn(2, 4, 700, 64), torch.randn(2, 2, 700, 64)
    got, ref = block_sparse_scores(q, k), block_sparse_scores_ref(q, k)
    assert torch.equal(torch.isinf(got), torch.isinf(ref))
    fin = torch.isfinite(ref)
    torch.testing.assert_close(got[fin], ref[fin], atol=1e-5, rtol=1e-5)


def test_block_sparse_indices_keep_first_block_and_budget() -> None:
    q, k = torch.randn(1, 2, 1000, 64), torch.randn(1, 2, 1000, 64)
    idx = block_sparse_indices(q, k, 5)
    assert idx.shape == (1, 2, 8, 3)
    scores = block_sparse_scores(q, k)
    assert (idx[0, :, 0] == -1).all()  # block 0 reads only its own diagonal
    for h in range(2):
        for m in range(1, 8):
            listed = idx[0, h, m].tolist()
            row = [i for i in listed if i >= 0]
            assert listed == row + [-1] * (3 - len(row))  # valid blocks first
            assert 0 in row and all(i < 2 * m for i in row)
            assert len(row) == len(set(row)) == min(3, 2 * m)
            best = scores[0, h, m, 1 : 2 * m].topk(min(2, 2 * m - 1)).indices + 1
            assert set(row) == {0, *best.tolist()}


def test_a_shape_indices() -> None:
    v_idx, s_idx = a_shape_indices(2, 3, 4, 8)
    assert v_idx.shape == (2, 3, 4) and s_idx.shape == (2, 3, 8)
    assert v_idx[1, 2].tolist() == [0, 1, 2, 3] and s_idx[0, 0, -1].item() == 7


def test_block_sparse_indices_same_when_heads_are_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    import ragline.attention.patterns as patterns

    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(1, 6, 900, 64, generator=g), torch.randn(1, 3, 900, 64, generator=g)
    whole = block_sparse_indices(q, k, 6)
    ranked = block_sparse_indices(q, k, 6, ranked=True)
    # one head per chunk: 8 query blocks x 15 key blocks x 4 bytes
    monkeypatch.setattr(patterns, "_CHUNK_BYTES", 8 * 15 * 4)
    chunked = block_sparse_indices(q, k, 6)
    assert torch.equal(whole.sort(-1).values, chunked.sort(-1).values)
    assert torch.equal(whole.sort(-1).values, ranked.sort(-1).values)
    scores = block_sparse_scores(q, k)
    for m in range(3, 8):  # ranked lists come best first
        vals = scores[0, 0, m, ranked[0, 0, m].long()]
        assert (vals[1:-1] >= vals[2:]).all()


def test_large_block_bias_is_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    import ragline.attention.patterns as patterns

    q, k = torch.randn(1, 2, 700, 64), torch.randn(1, 1, 700, 64)
    cached = block_sparse_scores(q, k)
    patterns._cached_left_bias.cache_clear()
    monkeypatch.setattr(patterns, "_BIAS_CACHE_ELEMENTS", 10)  # 6 x 11 blocks: too large now
    rebuilt = block_sparse_scores(q, k)
    assert patterns._cached_left_bias.cache_info().currsize == 0
    assert torch.equal(cached, rebuilt)


def test_vertical_slash_scores_at_a_model_scale_equal_scaled_queries() -> None:
    from ragline.attention.patterns import vertical_slash_scores

    g = torch.Generator().manual_seed(12)
    q, k = torch.randn(1, 4, 200, 64, generator=g), torch.randn(1, 2, 200, 64, generator=g)
    got = vertical_slash_scores(q, k, 200, scale=0.3)
    want = vertical_slash_scores(q * 0.3 * 64**0.5, k, 200)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(got[0], vertical_slash_scores(q, k, 200)[0], atol=1e-3)


@pytest.mark.parametrize(
    ("t", "top_k", "block_m", "chunked"),
    [(1000, 6, 128, False), (2977, 9, 128, True), (2977, 5, 64, False), (700, 40, 128, False)],
)
def test_block_sparse_indices_same_in_row_bands(
    monkeypatch: pytest.MonkeyPatch, t: int, top_k: int, block_m: int, chunked: bool
) -> None:
    import ragline.attention.patterns as patterns

    g = torch.Generator().manual_seed(t + top_k)
    q, k = torch.randn(2, 4, t, 64, generator=g), torch.randn(2, 2, t, 64, generator=g)
    kw = {"block_m": block_m, "block_n": 64, "kv_index": torch.tensor([1, 0, 0, 1])}
    n_m, n_k, ratio = -(-t // block_m), -(-t // 64), block_m // 64
    monkeypatch.setattr(patterns, "_BAND_ELEMENTS", 1 << 40)  # one band: the whole matrix
    assert patterns._bands(n_m, n_k, ratio, 1) == [None]
    whole = block_sparse_indices(q, k, top_k, **kw)
    whole_ranked = block_sparse_indices(q, k, top_k, ranked=True, **kw)
    monkeypatch.setattr(patterns, "_BAND_ELEMENTS", 1)
    if chunked:  # one head per score chunk
        monkeypatch.setattr(patterns, "_CHUNK_BYTES", 1)
    chosen = max(1, min(top_k - ratio, n_k))
    bands = patterns._bands(n_m, n_k, ratio, chosen)
    rows = [b[0] for b in bands if b is not None]
    assert len(rows) == min(8, n_m)
    assert [r.start for r in rows] == [0, *(r.stop for r in rows[:-1])]  # contiguous, in order
    assert rows[-1].stop == n_m
    if top_k < 20:  # these cases narrow some bands below the full width
        assert any(b is not None and b[1] < n_k for b in bands)
    banded = block_sparse_indices(q, k, top_k, **kw)
    assert torch.equal(whole.sort(-1).values, banded.sort(-1).values)
    assert torch.equal(whole_ranked, block_sparse_indices(q, k, top_k, ranked=True, **kw))


@pytest.mark.parametrize(
    ("t", "top_k", "block_m", "split", "given_kv"),
    [
        (1000, 6, 128, "", False),
        (2977, 9, 128, "bands", True),
        (2977, 5, 64, "bands+chunks", False),
        (700, 40, 128, "chunks", True),
        (1, 4, 128, "", False),
    ],
)
def test_block_sparse_plan_through_the_top_k_kernel_equals_the_torch_path(
    monkeypatch: pytest.MonkeyPatch, t: int, top_k: int, block_m: int, split: str, given_kv: bool
) -> None:
    """The GPU path (raw scores into `row_topk` with candidates and counts) plans what the torch
    path (causal bias, `topk`, short rows patched) plans, row for row; both equal the scores."""
    import ragline.attention.patterns as patterns
    from ragline.attention.patterns import block_sparse_plan
    from ragline.kernels.block_sparse import block_sparse_mask

    g = torch.Generator().manual_seed(t + top_k)
    q, k = torch.randn(2, 4, t, 64, generator=g), torch.randn(2, 2, t, 64, generator=g)
    kv = torch.tensor([0, 0, 1, 1]) if given_kv else None  # the default groups, spelled out
    lens = torch.tensor([t, t], dtype=torch.int32)
    kw = {"block_m": block_m, "block_n": 64, "kv_index": kv}
    if "bands" in split:
        monkeypatch.setattr(patterns, "_BAND_ELEMENTS", 1)
    if "chunks" in split:
        monkeypatch.setattr(patterns, "_CHUNK_BYTES", 1)
    torch_plan = block_sparse_plan(q, k, top_k, lens, **kw)
    monkeypatch.setattr(patterns, "_row_topk_kernel_for", lambda q, width: True)
    kernel_plan = block_sparse_plan(q, k, top_k, lens, **kw)
    assert torch.equal(kernel_plan.block_count, torch_plan.block_count)
    ratio = block_m // 64
    n_m = kernel_plan.block_count.shape[-1]
    left = (torch.arange(n_m) * ratio).clamp(max=-(-t // 64))
    assert torch.equal(kernel_plan.block_count[0, 0], left.clamp(max=max(1, top_k - ratio)).int())
    scores = block_sparse_scores(q, k, block_m=block_m)
    for b in range(2):
        for s in range(4):
            mask = block_sparse_mask(kernel_plan, b, s)
            assert torch.equal(mask, block_sparse_mask(torch_plan, b, s)), (b, s)
            for m in range(n_m):  # listed in position order, block 0 first, all left of m
                n = int(kernel_plan.block_count[b, s, m])
                row = kernel_plan.block_idx[b, s, m].long()
                assert (row[n:] == -1).all() and (row[:n].diff() > 0).all()
                if n:
                    assert row[0] == 0 and torch.isfinite(scores[b, s, m, row[:n]]).all()


def test_block_scores_of_gqa_groups_equal_gathered_key_heads() -> None:
    g = torch.Generator().manual_seed(17)
    q, k = torch.randn(1, 6, 900, 64, generator=g), torch.randn(1, 2, 900, 64, generator=g)
    grouped = block_sparse_scores(q, k)  # consecutive groups: one product per key head
    gathered = block_sparse_scores(q, k, kv_index=torch.tensor([0, 0, 0, 1, 1, 1]))
    torch.testing.assert_close(grouped, gathered, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grouped, block_sparse_scores_ref(q, k), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("heads", "kv_heads"), [(5, 2), (1, 2), (3, 2)])
def test_query_heads_that_do_not_group_over_key_heads_need_a_kv_map(
    heads: int, kv_heads: int
) -> None:
    q, k = torch.randn(1, heads, 300, 64), torch.randn(1, kv_heads, 300, 64)
    for build in (
        lambda: block_sparse_indices(q, k, 4),
        lambda: block_sparse_scores(q, k),
        lambda: vertical_slash_scores(q, k, 300),
    ):
        with pytest.raises(ValueError, match="pass kv_index"):
            build()
    kv = torch.arange(heads) % kv_heads  # any explicit map works
    assert block_sparse_indices(q, k, 4, kv_index=kv).shape == (1, heads, 3, 2)
