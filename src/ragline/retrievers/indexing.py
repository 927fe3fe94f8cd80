"""Build an index directory, or add documents to one, atomically (temp directory + rename)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ragline._version import __version__
from ragline.errors import UsageError
from ragline.fsutil import atomic_dir
from ragline.retrievers.bm25 import BM25Settings, build_bm25
from ragline.retrievers.chunking import ChunkSettings, chunk_documents
from ragline.retrievers.dense import DenseSettings, build_dense, extend_dense
from ragline.retrievers.index import (
    DOCUMENTS,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    Index,
    looks_like_index,
    open_index,
    sha256_file,
)
from ragline.types import Document

__all__ = ["METHODS", "add_documents", "build_index"]

METHODS = ("bm25", "dense")


def _check_unique(docs: Sequence[Document], existing: Iterable[str] = ()) -> None:
    seen: dict[str, Document | None] = dict.fromkeys(existing)
    for doc in docs:
        if doc.id in seen:
            first = seen[doc.id]
            where = first.metadata.get("source", "?") if first is not None else "the existing index"
            raise UsageError(
                f"duplicate document id {doc.id!r}: in {where} and {doc.metadata.get('source', '?')}"
            )
        seen[doc.id] = doc


def _check_target(out: Path, overwrite: bool) -> None:
    """Refuse to replace anything but a ragline index (or an empty directory)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory; choose another --out")
    is_index = looks_like_index(out)
    if not overwrite:
        hint = (
            "pass --overwrite to replace it, or --add to append"
            if is_index
            else "choose another --out"
        )
        raise UsageError(f"{out}: already exists; {hint}")
    if not is_index and any(out.iterdir()):
        raise UsageError(
            f"{out}: refusing to replace a directory that is not a ragline index; choose another --out"
        )


def _write_documents(path: Path, docs: Iterable[Document], mode: str = "w") -> None:
    with open(path, mode, encoding="utf-8") as f:
        for doc in docs:
            row = {"id": doc.id, "text": doc.text, "metadata": dict(doc.metadata)}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_manifest(
    tmp: Path, *, documents: int, sources: int, chunking: ChunkSettings, components: dict[str, Any]
) -> None:
    files = {
        p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()
    }
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "ragline": __version__,
        "documents": documents,
        "sources": sources,
        "chunking": chunking.model_dump(),
        "components": components,
        "files": files,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def build_index(
    documents: Iterable[Document],
    out: str | os.PathLike[str],
    *,
    methods: Sequence[str] = ("bm25",),
    overwrite: bool = False,
    progress: bool = True,
    bm25: BM25Settings | dict[str, Any] | None = None,
    dense: DenseSettings | dict[str, Any] | None = None,
    chunking: ChunkSettings | dict[str, Any] | None = None,
) -> Index:
    """Chunk `documents` and write an index directory: a reader sees the old index or the new one, never half.

    Args:
        documents: the corpus; ids must be unique and at least one document is required.
        out: the index directory to create.
        methods: search structures to build: "bm25", "dense" or both.
        overwrite: replace an existing index at `out`.
        progress: show progress bars on stderr.
        bm25: BM25 tokenisation (`stemmer`, `stopwords`); English by default.
        dense: embedder and faiss settings (`DenseSettings`); MiniLM and a flat index by default.
        chunking: passage splitting (`ChunkSettings`); 256-word chunks with 32 words of overlap.
    """
    out = Path(out)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UsageError(
            f"methods: expected one or more of {', '.join(METHODS)}, got {list(methods)!r}"
        )
    sources = list(documents)
    if not sources:
        raise UsageError(
            f"{out}: no documents to index (the inputs were empty or every file was skipped)"
        )
    _check_unique(sources)
    _check_target(out, overwrite)
    chunk_settings = ChunkSettings.model_validate(chunking or {})
    chunks = list(chunk_documents(sources, chunk_settings))
    _check_unique(chunks)
    texts = [c.text for c in chunks]
    components: dict[str, Any] = {}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        _write_documents(tmp / DOCUMENTS, chunks)
        if "bm25" in methods:
            bm25_settings = BM25Settings.model_validate(bm25 or {})
            build_bm25(texts, tmp / "bm25", bm25_settings, progress=progress)
            components["bm25"] = bm25_settings.model_dump()
        if "dense" in methods:
            components["dense"] = build_dense(
                texts, tmp / "dense", DenseSettings.model_validate(dense or {}), progress=progress
            )
        _write_manifest(
            tmp,
            documents=len(chunks),
            sources=len(sources),
            chunking=chunk_settings,
            components=components,
        )
    return open_index(out, verify=False)


def add_documents(
    path: str | os.PathLike[str], documents: Iterable[Document], *, progress: bool = True
) -> Index:
    """Append documents to an index with its own chunking and components, without re-embedding the old ones.

    BM25 statistics are recomputed over all documents (they are corpus-wide); dense vectors are
    computed only for the new chunks. The result equals a full rebuild for BM25 and flat/HNSW
    dense indexes; IVF keeps its trained cells. The directory is swapped in atomically.
    """
    path = Path(path)
    index = open_index(path, verify=True)
    new_sources = list(documents)
    if not new_sources:
        raise UsageError(f"{path}: no documents to add")
    existing_sources = {str(d.metadata.get("source_id", d.id)) for d in index.documents}
    _check_unique(new_sources, existing_sources)
    chunk_settings = ChunkSettings.model_validate(index.manifest["chunking"])
    new_chunks = list(chunk_documents(new_sources, chunk_settings))
    _check_unique(new_chunks, (d.id for d in index.documents))
    all_chunks = [*index.documents, *new_chunks]
    components = dict(index.manifest["components"])
    with atomic_dir(path, overwrite=True) as tmp:
        shutil.copyfile(path / DOCUMENTS, tmp / DOCUMENTS)
        _write_documents(tmp / DOCUMENTS, new_chunks, mode="a")
        if "bm25" in components:
            build_bm25(
                [c.text for c in all_chunks],
                tmp / "bm25",
                BM25Settings(**components["bm25"]),
                progress=progress,
            )
        if "dense" in components:
            extend_dense(
                path / "dense",
                tmp / "dense",
                [c.text for c in new_chunks],
                components["dense"],
                progress=progress,
            )
        sources = int(index.manifest.get("sources", len(existing_sources))) + len(new_sources)
        _write_manifest(
            tmp,
            documents=len(all_chunks),
            sources=sources,
            chunking=chunk_settings,
            components=components,
        )
    return open_index(path, verify=False)
