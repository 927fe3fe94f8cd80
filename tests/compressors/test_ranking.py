"""Rank fusion and the in-set BM25 prior."""

from __future__ import annotations

import pytest

from ragline.compressors.ranking import fuse_rankings, lexical_scores, ranks


def test_ranks_positions_and_direction() -> None:
    assert ranks([0.2, 0.9, 0.5]) == [2, 0, 1]
    assert ranks([0.2, 0.9, 0.5], higher_is_better=False) == [0, 2, 1]
    assert ranks([1.0, 1.0]) == [0, 1]  # ties keep the given order


def test_fusion_weights_decide_between_disagreeing_rankings() -> None:
    lm, prior = [0, 1, 2], [2, 1, 0]
    fused = fuse_rankings([(lm, 1.0), (prior, 0.5)])
    assert max(range(3), key=lambda i: fused[i]) == 0
    fused = fuse_rankings([(lm, 1.0), (prior, 2.0)])
    assert max(range(3), key=lambda i: fused[i]) == 2
    assert fuse_rankings([(lm, 1.0), (prior, 0.0)]) == pytest.approx([1 / 60, 1 / 61, 1 / 62])


def test_lexical_scores_prefer_documents_with_rare_question_words() -> None:
    docs = [
        "The ferry leaves the harbour twice a day.",
        "The Brassmoor Lighthouse stands 38 metres tall above the harbour.",
        "Lighthouses are tall.",
    ]
    scores = lexical_scores("How tall is the Brassmoor Lighthouse?", docs)
    assert ranks(scores) == [2, 0, 1]
    assert lexical_scores("", docs) == [0.0, 0.0, 0.0]
