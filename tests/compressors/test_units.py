"""Drop units, segment threshold selection and text reassembly."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragline.compressors.units import assemble, choose_units, segments, tokenize_units


@pytest.fixture(scope="module")
def tokenizer(tiny_lm_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_lm_dir)


def test_word_units_group_tokens_of_a_word(tokenizer) -> None:  # type: ignore[no-untyped-def]
    text = "The Brassmoor Lighthouse is 38 metres tall.\nIt was built in 1871."
    doc = tokenize_units(tokenizer, text, "word")
    assert [text[a:b] for a, b in doc.spans] == text.split()
    assert doc.unit_of == sorted(doc.unit_of)
    assert sum(doc.unit_sizes) == len(doc.ids)
    assert doc.has_digit == [any(c.isdigit() for c in w) for w in text.split()]


def test_token_units_are_single_tokens(tokenizer) -> None:  # type: ignore[no-untyped-def]
    doc = tokenize_units(tokenizer, "Lighthouse keepers", "token")
    assert doc.unit_of == list(range(len(doc.ids)))
    assert assemble(doc, [True] * len(doc.ids)) == "Lighthouse keepers"


def test_assemble_keeps_line_breaks_and_single_spaces(tokenizer) -> None:  # type: ignore[no-untyped-def]
    doc = tokenize_units(tokenizer, "one two  three\n\nfour five", "word")
    assert assemble(doc, [True, False, True, True, True]) == "one three\nfour five"
    assert assemble(doc, [False] * 5) == ""


def test_choose_units_threshold_keeps_highest_scores() -> None:
    keep = choose_units([0.1, 5.0, 3.0, -1.0], [1, 1, 1, 1], 0.5, [False] * 4)
    assert keep == [False, True, True, False]


def test_choose_units_forced_first_and_counted() -> None:
    keep = choose_units([0.1, 5.0, 3.0, -1.0], [1, 1, 1, 1], 0.5, [False, False, False, True])
    assert keep == [False, True, False, True]


def test_choose_units_weighs_unit_sizes() -> None:
    # Budget 3 of 6 tokens: the best unit (3 tokens) fills it alone.
    assert choose_units([9.0, 1.0, 1.0, 1.0], [3, 1, 1, 1], 0.5, [False] * 4) == [
        True,
        False,
        False,
        False,
    ]


def test_segments_cut_on_unit_borders(tokenizer) -> None:  # type: ignore[no-untyped-def]
    doc = tokenize_units(tokenizer, " ".join(["Brassmoor lighthouse keepers"] * 30), "word")
    segs = segments(doc, 16)
    assert segs[0][0] == 0 and segs[-1][1] == len(doc.ids)
    assert all(a < b for a, b in segs)
    assert all(x[1] == y[0] for x, y in pairwise(segs))
    assert all(doc.unit_of[b] != doc.unit_of[b - 1] for _, b in segs[:-1])


WORDS = st.sampled_from(["Brassmoor", "lighthouse", "1871,", "tall.", "the", "é", "keepers\n", "x"])


@settings(max_examples=50, deadline=None)
@given(words=st.lists(WORDS, min_size=1, max_size=40), data=st.data())
def test_assemble_output_is_a_word_subsequence(
    tokenizer, words: list[str], data: st.DataObject
) -> None:  # type: ignore[no-untyped-def]
    text = " ".join(words)
    doc = tokenize_units(tokenizer, text, "word")
    mask = data.draw(st.lists(st.booleans(), min_size=len(doc.spans), max_size=len(doc.spans)))
    out = assemble(doc, mask).split()
    src = text.split()
    it = iter(src)
    assert all(any(w == s for s in it) for w in out)
    assert out == [w for w, k in zip(src, mask, strict=True) if k]
