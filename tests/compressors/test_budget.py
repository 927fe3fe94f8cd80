"""Budget controller: expression parsing, document selection, dynamic ratios."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragline.compressors.budget import (
    apply_context_budget,
    dynamic_ratios,
    parse_context_budget,
    select_documents,
)


@pytest.mark.parametrize(
    ("expr", "want"),
    [("+100", ("+", 100.0)), ("-50", ("-", 50.0)), ("*1.5", ("*", 1.5)), (" + 7 ", ("+", 7.0))],
)
def test_parse_context_budget(expr: str, want: tuple[str, float]) -> None:
    assert parse_context_budget(expr) == want


@pytest.mark.parametrize(
    "expr", ["100", "+", "*0", "__import__('os')", "+1e9", "target_token+1", ""]
)
def test_parse_context_budget_rejects_anything_else(expr: str) -> None:
    with pytest.raises(ValueError, match="context_budget"):
        parse_context_budget(expr)


def test_apply_context_budget() -> None:
    assert apply_context_budget(400, "+100") == 500
    assert apply_context_budget(400, "*1.5") == 600
    assert apply_context_budget(40, "-100") == 0


def test_select_documents_in_rank_order_within_budget() -> None:
    lengths = [100, 100, 100, 100]
    # Rank order 2, 0, 3, 1; 250 tokens fit two whole documents, the third crosses the budget.
    assert select_documents([2, 0, 3, 1], lengths, 250) == [2, 0, 3]
    assert select_documents([2, 0, 3, 1], lengths, 200) == [2, 0]
    assert select_documents([2, 0, 3, 1], lengths, 0) == []


def test_select_documents_forced_always_kept_and_charged_first() -> None:
    lengths = [100, 100, 100, 100]
    assert select_documents([2, 0, 3, 1], lengths, 150, force=[1]) == [2, 1]
    assert select_documents([2, 0, 3, 1], lengths, 201, force=[1]) == [2, 0, 1]
    assert select_documents([2, 0, 3, 1], lengths, 0, force=[3]) == [3]


def test_dynamic_ratios_known_values() -> None:
    assert dynamic_ratios([100, 100, 100], 150, 0.2) == pytest.approx([0.7, 0.5, 0.3])
    assert dynamic_ratios([100, 100], 100, 0.0) == pytest.approx([0.5, 0.5])
    assert dynamic_ratios([100, 100], 500, 0.3) == [1.0, 1.0]
    assert dynamic_ratios([], 10, 0.3) == []


def test_dynamic_ratios_clamp_and_still_meet_target() -> None:
    # The best document would get 0.95 + 0.3: clamped to 1, the others make up the rest.
    r = dynamic_ratios([100, 100, 100], 285, 0.3)
    assert r[0] == 1.0
    assert sum(x * 100 for x in r) == pytest.approx(285, abs=0.01)


@given(
    lengths=st.lists(st.integers(1, 500), min_size=1, max_size=30),
    frac=st.floats(0.01, 0.99),
    spread=st.floats(0.0, 1.0),
)
def test_dynamic_ratios_sum_to_target_and_fall_with_rank(
    lengths: list[int], frac: float, spread: float
) -> None:
    target = frac * sum(lengths)
    r = dynamic_ratios(lengths, target, spread)
    assert all(0.0 <= x <= 1.0 for x in r)
    assert sum(x * n for x, n in zip(r, lengths, strict=True)) == pytest.approx(
        target, rel=1e-6, abs=1e-6
    )
    assert all(a >= b - 1e-12 for a, b in pairwise(r))
