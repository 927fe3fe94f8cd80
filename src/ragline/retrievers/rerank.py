"""`rerank.cross_encoder`: rescore retrieved documents with a sentence-transformers cross-encoder."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ragline.errors import ConfigError, ModelNotFound
from ragline.models.loader import pick_device
from ragline.pipeline.stage import ConfiguredStage, StageConfig
from ragline.types import Document, RunState, StageTrace

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

__all__ = ["CrossEncoderConfig", "CrossEncoderReranker", "load_cross_encoder"]

_LOCK = threading.Lock()
_MODELS: dict[tuple[str, str, int | None], CrossEncoder] = {}


def load_cross_encoder(
    model: str, *, device: str = "auto", max_length: int | None = None
) -> CrossEncoder:
    """Load a cross-encoder once per (model, device, max_length) in this process.

    Raises `ModelNotFound` when the name or path resolves to no loadable model, and
    `ConfigError` when the model gives more than one score per pair.
    """
    dev = pick_device(device)
    key = (model, dev, max_length)
    with _LOCK:
        if key in _MODELS:
            return _MODELS[key]
        from sentence_transformers import CrossEncoder

        try:
            encoder = CrossEncoder(model, device=dev, max_length=max_length)
        except (OSError, ValueError) as err:
            # sentence-transformers raises OSError for missing files and hub misses, ValueError
            # (HFValidationError) for names that are neither a path nor a valid repo id.
            raise ModelNotFound(
                f"cannot load cross-encoder {model!r}: {err}".splitlines()[0]
            ) from err
        if encoder.num_labels != 1:
            raise ConfigError(
                f"rerank.cross_encoder: expected a model with one relevance score per pair, "
                f"got {model!r} with {encoder.num_labels} labels"
            )
        _MODELS[key] = encoder
        return encoder


class CrossEncoderConfig(StageConfig):
    """Parameters of `rerank.cross_encoder`.

    `model` has no default: no cross-encoder ships offline with ragline, so name one that is on
    this machine (a local directory) or on the hub (e.g. "cross-encoder/ms-marco-MiniLM-L6-v2").
    """

    model: str = Field(min_length=1)
    """A sentence-transformers cross-encoder: a local directory or a hub id."""
    top_k: int | None = Field(default=None, ge=1)
    """Keep the best k documents after reranking; null keeps all."""
    batch_size: int = Field(default=32, ge=1)
    """(question, document) pairs scored per forward pass."""
    device: str = "auto"
    """"auto" (CUDA when present, else CPU), or a torch device string."""
    max_length: int | None = None
    """Truncate each pair to this many tokens; null uses the model's own limit."""


class CrossEncoderReranker(ConfiguredStage[CrossEncoderConfig]):
    """Reorder documents by a cross-encoder's score for (question, text); ties keep their order.

    Each document's score becomes the cross-encoder's score.

    Example:
        >>> stage = CrossEncoderReranker(model="./my-cross-encoder", top_k=5)  # doctest: +SKIP
    """

    type_name = "rerank.cross_encoder"
    Config = CrossEncoderConfig

    def __init__(self, config: CrossEncoderConfig | None = None, /, **params: Any) -> None:
        super().__init__(config, **params)
        self._model: CrossEncoder | None = None

    def warm_up(self) -> None:
        """Load the cross-encoder (shared with other stages naming the same model and device)."""
        if self._model is None:
            cfg = self.config
            self._model = load_cross_encoder(
                cfg.model, device=cfg.device, max_length=cfg.max_length
            )

    def _scores(self, question: str, texts: list[str]) -> list[float]:
        self.warm_up()
        assert self._model is not None
        scores = self._model.predict(
            [(question, text) for text in texts],
            batch_size=self.config.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return [float(s) for s in scores]

    def run(self, state: RunState) -> RunState:
        """Return the state with documents rescored, sorted best first and cut to `top_k`."""
        started = time.perf_counter()
        docs = state.documents
        kept: tuple[Document, ...] = ()
        if docs:
            scores = self._scores(state.query.text, [d.text for d in docs])
            # sorted() is stable, so equal scores keep the retriever's order.
            order = sorted(range(len(docs)), key=lambda i: -scores[i])
            ranked = [docs[i].with_score(scores[i]) for i in order]
            kept = tuple(ranked[: self.config.top_k])
        trace = StageTrace.since(
            self.name, started, reranked=len(docs), kept=len(kept), model=self.config.model
        )
        return state.evolve(documents=kept, trace=trace)
