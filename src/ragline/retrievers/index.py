"""An index directory: documents, per-method search structures, and a checksummed manifest."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ragline._version import __version__
from ragline.errors import IndexCorrupt, IndexNotFound, UsageError
from ragline.fsutil import atomic_dir
from ragline.types import Document

__all__ = ["FORMAT", "FORMAT_VERSION", "Index", "build_index", "open_index"]

FORMAT = "ragline-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DOCUMENTS = "documents.jsonl"


@dataclass(frozen=True)
class Index:
    """An opened index directory: its manifest and documents in insertion order."""

    path: Path
    manifest: dict[str, Any]
    documents: tuple[Document, ...]

    def component(self, name: str) -> dict[str, Any]:
        """The settings of a search structure (e.g. "bm25"), or IndexCorrupt if it was not built."""
        comps = self.manifest.get("components", {})
        if name not in comps:
            raise IndexCorrupt(
                f"{self.path}: the index has no {name!r} component (built: {', '.join(comps) or 'none'}); rebuild it with `ragline index`"
            )
        return dict(comps[name])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def build_index(
    documents: Iterable[Document],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: bool = True,
    bm25: dict[str, Any] | None = None,
) -> Index:
    """Write an index directory atomically: a reader sees the old index or the new one, never half.

    Args:
        documents: the corpus; ids must be unique and at least one document is required.
        out: the index directory to create.
        overwrite: replace an existing index at `out`.
        progress: show progress bars on stderr.
        bm25: BM25 tokenisation settings (`stemmer`, `stopwords`); defaults to English.
    """
    from ragline.retrievers.bm25 import BM25Settings, build_bm25

    out = Path(out)
    docs = list(documents)
    if not docs:
        raise UsageError(
            f"{out}: no documents to index (the inputs were empty or every file was skipped)"
        )
    seen: dict[str, Document] = {}
    for doc in docs:
        if doc.id in seen:
            first = seen[doc.id].metadata.get("source", "?")
            raise UsageError(
                f"duplicate document id {doc.id!r}: in {first} and {doc.metadata.get('source', '?')}"
            )
        seen[doc.id] = doc
    if out.exists() and not overwrite:
        raise UsageError(f"{out}: already exists; pass --overwrite to replace it")
    settings = BM25Settings(**(bm25 or {}))
    with atomic_dir(out, overwrite=overwrite) as tmp:
        with open(tmp / DOCUMENTS, "w", encoding="utf-8") as f:
            for doc in docs:
                f.write(
                    json.dumps(
                        {"id": doc.id, "text": doc.text, "metadata": dict(doc.metadata)},
                        ensure_ascii=False,
                    )
                    + "\n"
                )
        build_bm25([d.text for d in docs], tmp / "bm25", settings, progress=progress)
        files = {
            p.relative_to(tmp).as_posix(): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "ragline": __version__,
            "documents": len(docs),
            "components": {"bm25": settings.model_dump()},
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return open_index(out, verify=False)


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise IndexNotFound(
            f"{path}: index directory not found; build one with `ragline index FILES... --out {path}`"
        )
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise IndexNotFound(
            f"{path}: not a ragline index (no {MANIFEST}); build one with `ragline index FILES... --out {path}`"
        )
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise IndexCorrupt(
            f"{mpath}: unreadable manifest ({err}); rebuild the index with `ragline index --overwrite`"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexCorrupt(
            f"{mpath}: not a {FORMAT} manifest; rebuild the index with `ragline index --overwrite`"
        )
    if manifest.get("version") != FORMAT_VERSION:
        raise IndexCorrupt(
            f"{mpath}: index format version {manifest.get('version')!r}, this ragline reads version {FORMAT_VERSION}; "
            "rebuild the index with `ragline index --overwrite`"
        )
    return manifest


def open_index(path: str | os.PathLike[str], *, verify: bool = True) -> Index:
    """Open an index directory, checking its format version and (with `verify`) every file's checksum."""
    path = Path(path)
    manifest = _read_manifest(path)
    if verify:
        for rel, expected in manifest.get("files", {}).items():
            file = path / rel
            if not file.is_file():
                raise IndexCorrupt(
                    f"{path}: missing file {rel}; rebuild the index with `ragline index --overwrite`"
                )
            if _sha256(file) != expected:
                raise IndexCorrupt(
                    f"{path}: checksum mismatch for {rel} (modified since indexing); rebuild the index with `ragline index --overwrite`"
                )
    docs = []
    with open(path / DOCUMENTS, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            docs.append(Document(id=row["id"], text=row["text"], metadata=row.get("metadata", {})))
    if len(docs) != manifest.get("documents"):
        raise IndexCorrupt(
            f"{path}: manifest counts {manifest.get('documents')} documents, {DOCUMENTS} holds {len(docs)}"
        )
    return Index(path=path, manifest=manifest, documents=tuple(docs))
