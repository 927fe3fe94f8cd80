"""Document ranking for the budget controller: the LM's question-conditioned score fused with priors."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

__all__ = ["fuse_rankings", "lexical_scores", "ranks"]

RRF_K = 60


def ranks(scores: Sequence[float], *, higher_is_better: bool = True) -> list[int]:
    """Rank position (0 = best) of each item; ties keep the given order."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i] if higher_is_better else scores[i])
    pos = [0] * len(scores)
    for r, i in enumerate(order):
        pos[i] = r
    return pos


def fuse_rankings(rankings: Sequence[tuple[Sequence[int], float]]) -> list[float]:
    """Weighted reciprocal-rank fusion: `sum(w / (60 + rank))` per item over `(ranks, w)` pairs."""
    n = len(rankings[0][0])
    return [sum(w / (RRF_K + r[i]) for r, w in rankings if w) for i in range(n)]


def lexical_scores(question: str, texts: Sequence[str]) -> list[float]:
    """BM25 (k1 1.5, b 0.75) of the question against each text, statistics from these texts alone.

    Documents handed over without retriever scores still carry this signal: how many of the
    question's content words (stemmed, stop words removed) each one contains, weighted by rarity.
    """
    from ragline.retrievers.bm25 import BM25Settings, _Tokenizer

    tok = _Tokenizer(BM25Settings())
    q_terms = set(tok.query(question))
    docs = [Counter(tok.query(t)) for t in texts]
    n = len(docs)
    avg = sum(sum(d.values()) for d in docs) / max(n, 1) or 1.0
    df = Counter(term for d in docs for term in q_terms if term in d)
    out = []
    for d in docs:
        length = sum(d.values())
        s = 0.0
        for term in q_terms:
            f = d.get(term, 0)
            if f:
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                s += idf * f * 2.5 / (f + 1.5 * (0.25 + 0.75 * length / avg))
        out.append(s)
    return out
