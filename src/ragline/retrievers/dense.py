"""`retriever.dense`: sentence-transformers embeddings searched with faiss (flat, HNSW, IVF; CPU or GPU)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragline.errors import IndexCorrupt
from ragline.retrievers.base import IndexRetriever, IndexRetrieverConfig
from ragline.retrievers.faiss_index import (
    choose_device,
    create_index,
    default_nlist,
    faiss_module,
    search_index,
    to_gpu,
)
from ragline.retrievers.index import Index

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DenseConfig",
    "DenseRetriever",
    "DenseSettings",
    "build_dense",
    "embed_texts",
    "extend_dense",
]

EMBEDDINGS = "embeddings.npy"
FAISS_FILE = "index.faiss"


class DenseSettings(BaseModel):
    """How a dense component is built; stored in the manifest so queries match it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    embedder: str = "minilm-l6"
    """A packaged short name or any sentence-transformers model."""
    index: Literal["flat", "hnsw", "ivf"] = "flat"
    """flat: exact; hnsw: graph (M links per node); ivf: inverted lists searched `nprobe` at a time."""
    metric: Literal["ip", "l2"] = "ip"
    """Inner product (cosine when normalised) or Euclidean distance."""
    normalize: bool = True
    hnsw_m: int = Field(default=32, ge=4)
    ef_construction: int = Field(default=200, ge=8)
    nlist: int | None = Field(default=None, ge=1)
    """IVF cells; default about 4·sqrt(n) with at least 39 vectors per cell."""
    batch_size: int = Field(default=16, ge=1)
    query_prefix: str = ""
    """Prepended to questions (e5-style models want "query: ")."""
    document_prefix: str = ""


def embed_texts(
    texts: list[str],
    settings: DenseSettings,
    *,
    prefix: str = "",
    progress: bool = False,
    model: Any | None = None,
) -> np.ndarray:
    """`[len(texts), dim]` float32 embeddings (L2-normalised when the settings say so).

    `model` is the loaded embedder; without it the settings' embedder is looked up (and loaded
    once per process).
    """
    import numpy as np

    if model is None:
        from ragline.models.loader import load_embedder

        model = load_embedder(settings.embedder)
    vectors = model.encode(
        [prefix + t for t in texts],
        batch_size=settings.batch_size,
        normalize_embeddings=settings.normalize,
        convert_to_numpy=True,
        show_progress_bar=progress and sys.stderr.isatty(),
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def build_dense(
    texts: list[str], out: Path, settings: DenseSettings, *, progress: bool = True
) -> dict[str, Any]:
    """Embed `texts`, build the faiss index in directory `out`, and return the manifest entry."""
    import numpy as np

    faiss = faiss_module()
    vectors = embed_texts(texts, settings, prefix=settings.document_prefix, progress=progress)
    n, dim = vectors.shape
    nlist = settings.nlist or default_nlist(n)
    index = create_index(
        settings.index,
        settings.metric,
        dim,
        nlist=nlist,
        hnsw_m=settings.hnsw_m,
        ef_construction=settings.ef_construction,
    )
    if settings.index == "ivf":
        index.train(vectors)
    index.add(vectors)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / EMBEDDINGS, vectors)
    faiss.write_index(index, str(out / FAISS_FILE))
    return {
        **settings.model_dump(),
        "dimension": int(dim),
        "nlist": nlist if settings.index == "ivf" else None,
    }


def extend_dense(
    old: Path, out: Path, texts: list[str], entry: dict[str, Any], *, progress: bool = True
) -> dict[str, Any]:
    """Append embeddings of new `texts` to the component in `old`, writing the result to `out`.

    Flat and HNSW indexes grow exactly as a rebuild would; an IVF index keeps the cells it was
    trained on, so after large additions rebuild it for the best recall.
    """
    import numpy as np

    faiss = faiss_module()
    settings = DenseSettings(**{k: v for k, v in entry.items() if k in DenseSettings.model_fields})
    vectors = embed_texts(texts, settings, prefix=settings.document_prefix, progress=progress)
    index = faiss.read_index(str(old / FAISS_FILE))
    index.add(vectors)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / EMBEDDINGS, np.concatenate([np.load(old / EMBEDDINGS), vectors]))
    faiss.write_index(index, str(out / FAISS_FILE))
    return entry


class DenseConfig(IndexRetrieverConfig):
    """Parameters of `retriever.dense`."""

    embedder: str | None = None
    """The index's embedder is used; naming a different one is an error (vectors would not compare)."""
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    """auto: a faiss GPU index when faiss-gpu sees a CUDA device (flat and IVF), else the CPU."""
    nprobe: int | None = Field(default=None, ge=1)
    """IVF cells searched per query (default 8)."""
    ef_search: int | None = Field(default=None, ge=1)
    """HNSW candidate list size per query (default max(64, top_k))."""


class DenseRetriever(IndexRetriever[DenseConfig]):
    """Rank the index's documents by embedding similarity to the question.

    Scores are inner products (cosine for normalised embeddings) or negated squared L2 distances (faiss's), so
    higher is always better.

    Example:
        >>> stage = DenseRetriever(index="./my-index", top_k=5, nprobe=16)  # doctest: +SKIP
    """

    type_name = "retriever.dense"
    Config = DenseConfig
    component = "dense"

    def _load(self, index: Index, entry: dict[str, Any]) -> None:
        if self.config.embedder is not None and self.config.embedder != entry["embedder"]:
            raise IndexCorrupt(
                f"{index.path}: built with embedder {entry['embedder']!r}, but retriever.dense names "
                f"{self.config.embedder!r}; drop `embedder` from the stage or rebuild the index with "
                f"`ragline index ... --embedder {self.config.embedder} --overwrite`"
            )
        faiss = faiss_module()
        self._settings = DenseSettings(
            **{k: v for k, v in entry.items() if k in DenseSettings.model_fields}
        )
        from ragline.models.loader import load_embedder

        # Loaded here, not per query: the lookup takes a lock and probes CUDA each time.
        self._embedder = load_embedder(self._settings.embedder)
        cpu_index = faiss.read_index(str(index.path / "dense" / FAISS_FILE))
        if cpu_index.d != entry["dimension"] or cpu_index.ntotal != len(index.documents):
            raise IndexCorrupt(
                f"{index.path}: the faiss index does not match the manifest; rebuild the index"
            )
        if self._settings.index == "ivf":
            cpu_index.nprobe = self.config.nprobe or 8
        if self._settings.index == "hnsw":
            cpu_index.hnsw.efSearch = max(self.config.ef_search or 64, self.config.top_k)
        self.faiss_device = choose_device(self.config.device, self._settings.index, faiss)
        self._faiss = to_gpu(cpu_index, faiss) if self.faiss_device == "cuda" else cpu_index

    def embed_query(self, text: str) -> np.ndarray:
        """`[1, dim]` float32 query embedding."""
        return embed_texts(
            [text], self._settings, prefix=self._settings.query_prefix, model=self._embedder
        )

    def _search(self, text: str, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        dist, ids = search_index(
            self._faiss,
            self.embed_query(text),
            k,
            allowed=allowed,
            nprobe=self.config.nprobe,
            ef_search=self.config.ef_search,
            on_gpu=self.faiss_device == "cuda",
        )
        sign = -1.0 if self._settings.metric == "l2" else 1.0
        return [(int(i), sign * float(d)) for d, i in zip(dist[0], ids[0], strict=True) if i >= 0]
