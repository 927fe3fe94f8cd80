"""Subsequence recovery of answers quoted from compressed text."""

from __future__ import annotations

from ragline.compressors.recover import recover, recover_all

ORIGINAL = "Albert Einstein was born on 14 March 1879 in Ulm, in the Kingdom of Württemberg."
COMPRESSED = "Einstein born 14 March 1879 Ulm, Kingdom Württemberg."


def test_recover_restores_dropped_words_inside_a_copied_run() -> None:
    assert recover("He was born 14 March 1879 Ulm.", ORIGINAL, COMPRESSED) == (
        "He was born on 14 March 1879 in Ulm."
    )


def test_recover_keeps_text_that_is_not_a_copied_run() -> None:
    for answer in ["1879", "In 1879, in Germany.", "Ulm", ""]:
        assert recover(answer, ORIGINAL, COMPRESSED) == answer


def test_recover_leaves_runs_without_holes_and_large_gaps_alone() -> None:
    assert recover("Kingdom of Württemberg", ORIGINAL, COMPRESSED) == "Kingdom of Württemberg"
    long_original = "alpha " + " ".join(f"w{i}" for i in range(20)) + " omega"
    assert recover("alpha omega", long_original, "alpha omega") == "alpha omega"


def test_recover_matches_without_case_and_keeps_the_answers_words() -> None:
    assert recover("born 14 march 1879 ulm", ORIGINAL, COMPRESSED) == "born on 14 march 1879 in ulm"


def test_recover_all_uses_each_document_once() -> None:
    originals = {"a": ORIGINAL, "b": "The tower stands 38 metres tall over the bay."}
    compressed = {"a": COMPRESSED, "b": "tower 38 metres bay."}
    out = recover_all("Born 14 March 1879 Ulm.", originals, compressed)
    assert out == "Born on 14 March 1879 in Ulm."
