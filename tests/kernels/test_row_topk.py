"""row_topk: kernel == reference (stable top-k) on odd sizes, ties, infinities; index builder."""

from __future__ import annotations

import pytest
import torch

from ragline.kernels.row_topk import ROW_TOPK_MAX_WIDTH, row_topk, row_topk_ref


@pytest.mark.parametrize(
    ("rows", "width", "k"), [(7, 37, 5), (3, 301, 98), (2, 129, 129), (5, 64, 1)]
)
def test_kernel_equals_reference_on_random_rows(rows: int, width: int, k: int) -> None:
    g = torch.Generator().manual_seed(rows * width + k)
    scores = torch.randn(rows, width, generator=g) * 3
    scores[0, width // 2] = float("inf")
    scores[-1, : width // 3] = float("-inf")
    got = row_topk(scores, k)
    assert got.dtype == torch.int32 and got.shape == (rows, k)
    assert torch.equal(got, row_topk_ref(scores, k))
    assert torch.equal(got.long(), scores.topk(k, -1).indices.sort(-1).values)


def test_ties_take_the_lowest_positions_and_signs_order_as_floats() -> None:
    scores = torch.zeros(3, 50)
    scores[:, ::7] = 1.0
    scores[1] = -torch.arange(50, dtype=torch.float32) / 7  # all negative: -0 first, then -1/7...
    scores[2, 10:20] = -0.0
    got = row_topk(scores, 10)
    assert got[0].tolist() == [0, 1, 2, 7, 14, 21, 28, 35, 42, 49]
    assert got[1].tolist() == list(range(10))
    assert torch.equal(got, row_topk_ref(scores, 10))


def test_signed_zeros_tie_and_edge_rows_match_the_reference() -> None:
    zeros = torch.tensor([[-0.0, 0.0, -0.0, 0.0]])
    assert row_topk(zeros, 1).tolist() == [[0]]
    assert row_topk(zeros, 3).tolist() == [[0, 1, 2]]
    inf, tiny = float("inf"), 1e-40  # a denormal
    rows = torch.tensor(
        [
            [2.0] * 9,  # all equal
            [-inf] * 9,  # nothing finite
            [inf, 1.0, inf, inf, 0.0, inf, -1.0, inf, 2.0],  # more +inf than k
            [tiny, -tiny, 0.0, 3 * tiny, -0.0, 2 * tiny, -3 * tiny, 1e-39, -1e-39],
        ]
    )
    for k in (1, 4, 9):
        assert torch.equal(row_topk(rows, k), row_topk_ref(rows, k)), k
    one = torch.randn(5, 1)
    assert torch.equal(row_topk(one, 1), torch.zeros(5, 1, dtype=torch.int32))
    assert row_topk(torch.zeros(0, 7), 3).shape == (0, 3)


@pytest.mark.parametrize("width", [2049, ROW_TOPK_MAX_WIDTH])
def test_widest_rows_the_kernel_holds(width: int) -> None:
    g = torch.Generator().manual_seed(width)
    scores = torch.randn(3, width, generator=g)
    assert torch.equal(row_topk(scores, 98), row_topk_ref(scores, 98))


def test_strided_rows_wide_rows_and_bad_input() -> None:
    g = torch.Generator().manual_seed(9)
    base = torch.randn(4, 90, generator=g)
    view = base[:, 5:70]  # row stride 90, unit stride along the row
    assert torch.equal(row_topk(view, 11), row_topk_ref(view, 11))
    wide = torch.randn(2, ROW_TOPK_MAX_WIDTH + 3, generator=g)  # the reference takes these
    assert torch.equal(row_topk(wide, 7), row_topk_ref(wide, 7))
    with pytest.raises(ValueError, match="k must be"):
        row_topk(base, 91)
    with pytest.raises(ValueError, match="float32"):
        row_topk(base.double(), 3)
    with pytest.raises(ValueError, match="unit stride"):
        row_topk(base.t(), 3)


def test_block_sparse_indices_through_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    import ragline.attention.patterns as patterns

    g = torch.Generator().manual_seed(4)
    q, k = torch.randn(1, 4, 1500, 64, generator=g), torch.randn(1, 2, 1500, 64, generator=g)
    want = patterns.block_sparse_indices(q, k, 7)
    monkeypatch.setattr(patterns, "_row_topk_kernel_for", lambda q, width: True)
    monkeypatch.setattr(patterns, "_BAND_ELEMENTS", 1)  # bands as well
    got = patterns.block_sparse_indices(q, k, 7)
    assert torch.equal(got.sort(-1).values, want.sort(-1).values)


@pytest.mark.parametrize(
    ("rows", "period", "width", "k"), [(6, 3, 41, 7), (8, 1, 130, 98), (4, 4, 5, 5), (9, 9, 300, 1)]
)
def test_candidates_first_position_and_counts_match_the_reference(
    rows: int, period: int, width: int, k: int
) -> None:
    g = torch.Generator().manual_seed(rows * width + k)
    scores = torch.randn(rows, width, generator=g)
    scores[::2, 1::5] = float("inf")
    scores[1::3, ::4] = float("-inf")
    # below zero, zero, fewer than k, more than k, past the row: every kind of row
    valid = torch.randint(-2, width + 4, (period,), generator=g)
    valid[0] = 0
    for v in (valid, valid.int(), None):
        for first in (False, True):
            counts = torch.full((rows,), -7, dtype=torch.int32)
            got = row_topk(scores, k, valid=v, keep_first=first, counts=counts)
            want = row_topk_ref(scores, k, valid=v, keep_first=first)
            assert torch.equal(got, want), (v, first)
            assert torch.equal(counts, (want >= 0).sum(-1, dtype=torch.int32))
            if v is not None:  # a row never reaches past its candidates, and pads with -1
                n = v.repeat(rows // period).clamp(0, width)
                assert (got.max(-1).values < n.clamp(min=1)).all()
                assert torch.equal(counts, n.clamp(max=k).int())


def test_first_position_goes_before_infinities_and_other_rows_keep_theirs() -> None:
    inf = float("inf")
    scores = torch.tensor([[1.0, inf, inf, 5.0], [-inf, 2.0, 3.0, 1.0]])
    assert row_topk(scores, 1, keep_first=True).tolist() == [[0], [0]]
    assert row_topk(scores, 2, keep_first=True).tolist() == [[0, 1], [0, 2]]
    assert row_topk(scores, 2, valid=torch.tensor([1, 3]), keep_first=True).tolist() == [
        [0, -1],
        [0, 2],
    ]
    assert row_topk(scores, 2, valid=torch.tensor([0, 4])).tolist() == [[-1, -1], [1, 2]]


def test_bad_candidates_and_counts_are_refused() -> None:
    scores = torch.randn(6, 10)
    with pytest.raises(ValueError, match="multiple of P"):
        row_topk(scores, 3, valid=torch.tensor([1, 2, 3, 4]))
    with pytest.raises(ValueError, match="int32/int64"):
        row_topk(scores, 3, valid=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="counts must be"):
        row_topk(scores, 3, counts=torch.zeros(6, dtype=torch.int64))
    with pytest.raises(ValueError, match="counts must be"):
        row_topk(scores, 3, counts=torch.zeros(2, 3, dtype=torch.int32))


def test_strided_candidates_and_counts_are_refused() -> None:
    scores = torch.randn(4, 10)
    with pytest.raises(ValueError, match="contiguous"):
        row_topk(scores, 3, valid=torch.tensor([3, 9, 0, 7, 1, 2, 5, 6])[::2])
    with pytest.raises(ValueError, match="contiguous"):
        row_topk(scores, 3, counts=torch.zeros(4, 2, dtype=torch.int32)[:, 0])
