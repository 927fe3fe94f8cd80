"""The compression algorithm shared by LongLLMLingua and LLMLingua: rank, budget, token-level drop."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from ragline.compressors.budget import apply_context_budget, dynamic_ratios, select_documents
from ragline.compressors.ranking import fuse_rankings, lexical_scores, ranks
from ragline.compressors.scoring import LMScorer, RankPass, SurprisalStream
from ragline.compressors.units import (
    Granularity,
    TokenizedText,
    assemble,
    choose_units,
    segments,
    tokenize_units,
)
from ragline.types import Document

if TYPE_CHECKING:
    import torch

__all__ = ["RESTRICTIVE", "CompressionResult", "DocReport", "Settings", "compress"]

RESTRICTIVE = "We can get the answer to this question in the given documents."
"""Appended to the question when ranking documents, as in LongLLMLingua."""

Reorder = Literal["original", "sort", "two_stage"]


@dataclass(frozen=True)
class Settings:
    """Algorithm parameters (the stages' configs map onto these)."""

    question_aware: bool
    rate: float = 0.5
    target_tokens: int | None = None
    context_budget: str = "+100"
    force_keep: tuple[str, ...] = ()
    dynamic_ratio: float = 0.0
    iterative_size: int = 200
    condition_compare: bool = False
    reorder: Reorder = "original"
    granularity: Granularity = "word"
    keep_numbers: bool = True
    retriever_prior: float = 0.0
    lexical_prior: float = 0.0


@dataclass(frozen=True)
class DocReport:
    """What happened to one input document."""

    id: str
    rank: int | None
    lm_score: float | None
    fused_score: float | None
    keep_ratio: float
    tokens_in: int
    tokens_out: int


@dataclass(frozen=True)
class CompressionResult:
    """Compressed documents in output order, with per-document reports and totals."""

    documents: tuple[Document, ...]
    reports: tuple[DocReport, ...]
    dropped: tuple[str, ...]
    tokens_in: int
    tokens_out: int
    originals: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of the phases: `rank` (the document pass) and `token_level`."""

    @property
    def rate(self) -> float:
        """Tokens out over tokens in (1.0 for empty input)."""
        return self.tokens_out / self.tokens_in if self.tokens_in else 1.0


def _ranking(
    question: str, docs: Sequence[Document], rank: RankPass, perplexity: list[float], s: Settings
) -> tuple[list[float], list[float]]:
    """Per-document `(lm_score, fused_score)`, higher is more relevant for both."""
    if s.question_aware:
        lm = [-x for x in rank.query_nll]  # low question NLL given the document = relevant
    else:
        lm = perplexity  # LLMLingua keeps the documents the LM finds most informative
    signals: list[tuple[Sequence[int], float]] = [(ranks(lm), 1.0)]
    scores = [d.score for d in docs]
    if s.retriever_prior and all(x is not None for x in scores):
        signals.append((ranks([float(x) for x in scores if x is not None]), s.retriever_prior))
    if s.lexical_prior and s.question_aware:
        signals.append((ranks(lexical_scores(question, [d.text for d in docs])), s.lexical_prior))
    return lm, fuse_rankings(signals)


def _unit_scores(doc: TokenizedText, lo: int, hi: int, token_scores: torch.Tensor) -> list[float]:
    """Max token score per unit of tokens `lo:hi` (a unit is dropped only if all its tokens are)."""
    first = doc.unit_of[lo]
    out = [float("-inf")] * (doc.unit_of[hi - 1] - first + 1)
    for t in range(lo, hi):
        u = doc.unit_of[t] - first
        out[u] = max(out[u], float(token_scores[t - lo]))
    return out


class _TokenLevel:
    """Iterative token-level compression of the selected documents."""

    def __init__(self, scorer: LMScorer, rank: RankPass, q_prefix: list[int], s: Settings) -> None:
        self.scorer, self.rank, self.q_prefix, self.s = scorer, rank, q_prefix, s

    def _combine(self, plain: torch.Tensor | None, cond: torch.Tensor | None) -> torch.Tensor:
        if not self.s.question_aware:
            assert plain is not None
            return plain
        assert cond is not None
        if self.s.condition_compare:
            assert plain is not None
            return plain - cond  # how much the question makes each token less surprising
        return cond

    def _keep(
        self, doc: TokenizedText, lo: int, hi: int, scores: torch.Tensor, ratio: float
    ) -> list[bool]:
        first, last = doc.unit_of[lo], doc.unit_of[hi - 1]
        sizes = doc.unit_sizes[first : last + 1]
        forced = doc.has_digit[first : last + 1] if self.s.keep_numbers else [False] * len(sizes)
        return choose_units(_unit_scores(doc, lo, hi, scores), sizes, ratio, forced)

    def run(self, jobs: list[tuple[int, TokenizedText, float]]) -> dict[int, list[bool]]:
        """Unit keep-masks for `(doc index, document, keep ratio)` jobs."""
        s = self.s
        need_plain = not s.question_aware or s.condition_compare
        short = [j for j in jobs if len(j[1].ids) <= s.iterative_size]
        long_ = [j for j in jobs if len(j[1].ids) > s.iterative_size]
        masks: dict[int, list[bool]] = {}
        # One-segment documents: the plain stream comes from the ranking pass, the
        # question-conditioned one from one batched pass over all of them.
        cond: list[torch.Tensor | None] = [None] * len(short)
        if s.question_aware and short:
            cond = list(self.scorer.prefixed_surprisal(self.q_prefix, [d.ids for _, d, _ in short]))
        plain: list[torch.Tensor | None] = [None] * len(short)
        if need_plain and short:
            plain = list(self.scorer.doc_surprisals(self.rank, [(i, d.ids) for i, d, _ in short]))
        for (i, doc, ratio), p, c in zip(short, plain, cond, strict=True):
            masks[i] = self._keep(doc, 0, len(doc.ids), self._combine(p, c), ratio)
        for i, doc, ratio in long_:
            masks[i] = self._iterate(doc, ratio, need_plain)
        return masks

    def _iterate(self, doc: TokenizedText, ratio: float, need_plain: bool) -> list[bool]:
        plain_stream = SurprisalStream(self.scorer, []) if need_plain else None
        cond_stream = SurprisalStream(self.scorer, self.q_prefix) if self.s.question_aware else None
        keep_units: list[bool] = []
        for lo, hi in segments(doc, self.s.iterative_size):
            seg = doc.ids[lo:hi]
            plain = plain_stream.score(seg) if plain_stream else None
            cond = cond_stream.score(seg) if cond_stream else None
            unit_mask = self._keep(doc, lo, hi, self._combine(plain, cond), ratio)
            first = doc.unit_of[lo]
            tok_mask = [unit_mask[doc.unit_of[t] - first] for t in range(lo, hi)]
            for stream in (plain_stream, cond_stream):
                if stream is not None:
                    stream.keep(seg, tok_mask)
            # A unit split across two segments (only possible in token granularity) keeps
            # the decision of the segment holding its first token.
            if keep_units and doc.unit_of[lo] == len(keep_units) - 1:
                unit_mask = unit_mask[1:]
            keep_units.extend(unit_mask)
        return keep_units


def _order(kept: list[int], fused: list[float], how: Reorder) -> list[int]:
    if how == "original":
        return sorted(kept)
    by_rank = sorted(kept, key=lambda i: -fused[i])
    if how == "sort":
        return by_rank
    # two_stage: the best at both ends, the weakest in the middle, against "lost in the middle".
    front, back = by_rank[0::2], by_rank[1::2]
    return front + back[::-1]


def compress(
    scorer: LMScorer, question: str, docs: Sequence[Document], s: Settings
) -> CompressionResult:
    """Compress `docs` for `question` (ignored unless `s.question_aware`) to the requested budget."""
    tok = scorer.lm.tokenizer
    tokenized = [tokenize_units(tok, d.text, s.granularity) for d in docs]
    live = [i for i, t in enumerate(tokenized) if t.ids]
    lengths = [len(t.ids) for t in tokenized]
    total = sum(lengths)
    target = float(min(total, s.target_tokens if s.target_tokens is not None else s.rate * total))

    q_rank: list[int] = []
    q_prefix: list[int] = []
    if s.question_aware:
        q_rank = tok(f"\n\n{question} {RESTRICTIVE}", add_special_tokens=False)["input_ids"]
        q_prefix = tok(f"{question}\n\n", add_special_tokens=False)["input_ids"]
        # A question as long as the window would leave no room for the documents.
        cap = scorer.window // 4
        q_rank, q_prefix = q_rank[-cap:], q_prefix[-cap:]
    started = time.perf_counter()
    rank = scorer.rank([tokenized[i].ids for i in live], q_rank)
    rank_s = time.perf_counter() - started
    perplexity = [0.0] * len(live)
    if not s.question_aware:
        own = scorer.doc_surprisals(
            rank, [(k, tokenized[i].ids[: rank.covered[k]]) for k, i in enumerate(live)]
        )
        perplexity = [float(x.mean()) for x in own]
    lm, fused_live = _ranking(question, [docs[i] for i in live], rank, perplexity, s)
    order = sorted(range(len(live)), key=lambda k: -fused_live[k])
    force = [k for k, i in enumerate(live) if docs[i].id in set(s.force_keep)]
    budget = apply_context_budget(target, s.context_budget)
    chosen = select_documents(order, [lengths[i] for i in live], budget, force)
    ratios = dynamic_ratios([lengths[live[k]] for k in chosen], target, s.dynamic_ratio)

    jobs = [(k, tokenized[live[k]], r) for k, r in zip(chosen, ratios, strict=True) if r < 1.0]
    started = time.perf_counter()
    masks = _TokenLevel(scorer, rank, q_prefix, s).run(jobs)
    token_s = time.perf_counter() - started
    texts = {
        k: assemble(tokenized[live[k]], masks[k]) if k in masks else docs[live[k]].text
        for k in chosen
    }
    kept = [k for k in chosen if texts[k].strip()]
    out_tokens = {k: len(tok(texts[k], add_special_tokens=False)["input_ids"]) for k in kept}
    ratio_of = dict(zip(chosen, ratios, strict=True))
    rank_of = {k: r for r, k in enumerate(order)}
    k_of = {i: k for k, i in enumerate(live)}

    reports = []
    for i, d in enumerate(docs):
        k = k_of.get(i)
        reports.append(
            DocReport(
                id=d.id,
                rank=None if k is None else rank_of[k],
                lm_score=None if k is None else lm[k],
                fused_score=None if k is None else fused_live[k],
                keep_ratio=0.0 if k is None else ratio_of.get(k, 0.0),
                tokens_in=lengths[i],
                tokens_out=0 if k is None else out_tokens.get(k, 0),
            )
        )
    ordered = _order(kept, fused_live, s.reorder)
    out_docs = tuple(replace(docs[live[k]], text=texts[k]) for k in ordered)
    originals = {
        docs[live[k]].id: docs[live[k]].text for k in ordered if texts[k] != docs[live[k]].text
    }
    survivors = {live[k] for k in ordered}
    return CompressionResult(
        documents=out_docs,
        reports=tuple(reports),
        dropped=tuple(d.id for i, d in enumerate(docs) if i not in survivors),
        tokens_in=total,
        tokens_out=sum(out_tokens.values()),
        originals=originals,
        seconds={"rank": rank_s, "token_level": token_s},
    )
