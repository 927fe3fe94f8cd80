"""`retriever.hybrid`: run child retrievers concurrently and fuse their rankings."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from ragline.errors import ConfigError
from ragline.pipeline.stage import ConfiguredStage, Stage, StageConfig
from ragline.registry import build_stage, load_stage_class
from ragline.types import Document, RunState, StageTrace

__all__ = ["HybridConfig", "HybridRetriever", "reciprocal_rank_fusion", "weighted_score_fusion"]

Ranking = Sequence[Document]


def reciprocal_rank_fusion(
    rankings: Sequence[Ranking], *, k: int = 60, weights: Sequence[float] | None = None
) -> list[Document]:
    """Fuse rankings by `sum_i w_i / (k + rank_i)` (ranks from 1); ties keep first-seen order."""
    weights = weights or [1.0] * len(rankings)
    scores: dict[str, float] = {}
    docs: dict[str, Document] = {}
    for ranking, w in zip(rankings, weights, strict=True):
        for rank, doc in enumerate(ranking, start=1):
            scores[doc.id] = scores.get(doc.id, 0.0) + w / (k + rank)
            docs.setdefault(doc.id, doc)
    order = sorted(scores, key=lambda i: -scores[i])  # stable: ties keep first-seen order
    return [docs[i].with_score(scores[i]) for i in order]


def weighted_score_fusion(
    rankings: Sequence[Ranking], *, weights: Sequence[float] | None = None
) -> list[Document]:
    """Fuse by a weighted sum of each ranking's min-max normalised scores (absent counts as 0)."""
    weights = weights or [1.0] * len(rankings)
    scores: dict[str, float] = {}
    docs: dict[str, Document] = {}
    for ranking, w in zip(rankings, weights, strict=True):
        values = [d.score if d.score is not None else 0.0 for d in ranking]
        lo, hi = (min(values), max(values)) if values else (0.0, 0.0)
        for doc, value in zip(ranking, values, strict=True):
            norm = (value - lo) / (hi - lo) if hi > lo else 1.0
            scores[doc.id] = scores.get(doc.id, 0.0) + w * norm
            docs.setdefault(doc.id, doc)
    order = sorted(scores, key=lambda i: -scores[i])
    return [docs[i].with_score(scores[i]) for i in order]


def _default_children() -> list[dict[str, Any]]:
    return [{"type": "retriever.bm25"}, {"type": "retriever.dense"}]


def _prefixed(err: ValidationError, prefix: tuple[str | int, ...]) -> list[Any]:
    return [
        {
            "type": e["type"],
            "loc": (*prefix, *e["loc"]),
            "input": e.get("input"),
            "ctx": e.get("ctx") or {},
        }
        for e in err.errors()
    ]


class HybridConfig(StageConfig):
    """Parameters of `retriever.hybrid`."""

    index: str | None = None
    """Given to every child that has an `index` parameter and does not set its own."""
    retrievers: list[dict[str, Any]] = Field(default_factory=_default_children, min_length=1)
    """Child retriever stages, each `{type: ..., <its parameters>}`; default BM25 and dense."""
    fusion: Literal["rrf", "weighted"] = "rrf"
    """rrf: reciprocal-rank fusion; weighted: sum of min-max normalised scores."""
    rrf_k: int = Field(default=60, ge=1)
    weights: list[float] | None = None
    """One weight per child (default 1 each)."""
    top_k: int = Field(default=5, ge=1)
    candidates: int | None = Field(default=None, ge=1)
    """Each child's `top_k` unless it sets one; default `top_k`, as in the classic RRF setting
    of equally long result lists. Deeper lists let a weaker retriever's long tail outvote a
    stronger one's (measured in benchmarks/retrieval.py)."""
    where: dict[str, Any] | None = None
    """Metadata filter given to children that take one."""

    @model_validator(mode="after")
    def _check_children(self) -> HybridConfig:
        if self.weights is not None and len(self.weights) != len(self.retrievers):
            raise ValueError(
                f"weights: expected {len(self.retrievers)} weights (one per retriever), got {len(self.weights)}"
            )
        errors: list[Any] = []
        for i, spec in enumerate(self.retrievers):
            try:
                cls, params = self.child_params(i)
            except (ConfigError, KeyError) as err:
                errors.append(
                    {
                        "type": "value_error",
                        "loc": ("retrievers", i, "type"),
                        "input": spec.get("type"),
                        "ctx": {"error": ValueError(str(err).strip("'"))},
                    }
                )
                continue
            config_cls = getattr(cls, "Config", None)
            if isinstance(config_cls, type) and issubclass(config_cls, BaseModel):
                try:
                    config_cls(**params)
                except ValidationError as err:
                    errors.extend(_prefixed(err, ("retrievers", i)))
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def child_params(self, i: int) -> tuple[type, dict[str, Any]]:
        """The class of child `i` and its parameters with the inherited ones filled in."""
        params = dict(self.retrievers[i])
        type_name = params.pop("type", None)
        if not isinstance(type_name, str):
            raise ConfigError(f"expected a retriever type name, got {type_name!r}")
        cls = load_stage_class(type_name)
        fields = getattr(getattr(cls, "Config", None), "model_fields", {})
        inherited = {
            "index": self.index,
            "top_k": self.candidates or self.top_k,
            "where": self.where,
        }
        for key, value in inherited.items():
            if key in fields and key not in params and value is not None:
                params[key] = value
        return cls, params


class HybridRetriever(ConfiguredStage[HybridConfig]):
    """Run several retrievers on the question concurrently and fuse their rankings.

    Example:
        >>> stage = HybridRetriever(index="./idx", top_k=5)  # bm25 + dense, reciprocal-rank fusion  # doctest: +SKIP
    """

    type_name = "retriever.hybrid"
    Config = HybridConfig

    def __init__(self, config: HybridConfig | None = None, /, **params: Any) -> None:
        super().__init__(config, **params)
        self.children: list[Stage] = []
        for i in range(len(self.config.retrievers)):
            cls, child = self.config.child_params(i)
            self.children.append(build_stage(cls, child))
        self._pool: ThreadPoolExecutor | None = None

    def warm_up(self) -> None:
        """Warm every child and start the worker threads."""
        for child in self.children:
            hook = getattr(child, "warm_up", None)
            if hook is not None:
                hook()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=len(self.children), thread_name_prefix="ragline-hybrid"
            )

    def close(self) -> None:
        """Stop the worker threads and close the children."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for child in self.children:
            hook = getattr(child, "close", None)
            if hook is not None:
                hook()

    def _timed(self, child: Stage, state: RunState) -> tuple[RunState, float]:
        started = time.perf_counter()
        return child.run(state), time.perf_counter() - started

    def run(self, state: RunState) -> RunState:
        """Put the fused top-k documents into `state.documents`."""
        self.warm_up()
        assert self._pool is not None
        started = time.perf_counter()
        bare = RunState(query=state.query)
        results = list(self._pool.map(lambda c: self._timed(c, bare), self.children))
        rankings = [r.documents for r, _ in results]
        cfg = self.config
        if cfg.fusion == "rrf":
            fused = reciprocal_rank_fusion(rankings, k=cfg.rrf_k, weights=cfg.weights)
        else:
            fused = weighted_score_fusion(rankings, weights=cfg.weights)
        docs = tuple(fused[: cfg.top_k])
        children = [
            {"stage": c.name, "retrieved": len(r.documents), "seconds": s}
            for c, (r, s) in zip(self.children, results, strict=True)
        ]
        trace = StageTrace.since(
            self.name, started, retrieved=len(docs), fusion=cfg.fusion, children=children
        )
        return state.evolve(documents=docs, trace=trace)
