"""An index directory: documents, per-method search structures, and a checksummed manifest.

Layout (format version 2)::

    manifest.json      format, version, counts, chunking, components, sha256 of every file
    documents.jsonl    one chunk per line: id, text, metadata (source_id, char offsets, ...)
    bm25/              bm25s arrays                     (component "bm25")
    dense/             embeddings.npy + index.faiss     (component "dense")
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragline.errors import IndexCorrupt, IndexNotFound

if TYPE_CHECKING:
    import numpy as np

    from ragline.types import Document

__all__ = [
    "DOCUMENTS",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "Index",
    "open_index",
    "sha256_file",
]

FORMAT = "ragline-index"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
DOCUMENTS = "documents.jsonl"
_REBUILD = "rebuild it with `ragline index ... --overwrite`"


@dataclass(frozen=True, eq=False)
class Index:
    """An opened index directory: its manifest and documents (chunks) in insertion order."""

    path: Path
    manifest: dict[str, Any]
    documents: tuple[Document, ...]
    _filters: dict[str, dict[Any, np.ndarray]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def component(self, name: str) -> dict[str, Any]:
        """The settings of a search structure ("bm25", "dense"), or IndexCorrupt if it was not built."""
        comps = self.manifest.get("components", {})
        if name not in comps:
            built = ", ".join(comps) or "none"
            raise IndexCorrupt(
                f"{self.path}: the index has no {name!r} component (built: {built}); "
                f"rebuild it with `ragline index ... --method {name}`"
            )
        return dict(comps[name])

    def allowed_ids(self, where: dict[str, Any] | None) -> np.ndarray | None:
        """Row ids whose metadata matches `where` (all keys; a list value means any of), or None for no filter."""
        from ragline.retrievers.filters import matching_rows

        if not where:
            return None
        with self._lock:
            return matching_rows(self.documents, where, self._filters)


def looks_like_index(path: Path) -> bool:
    """Whether `path` is a directory holding a ragline index manifest (format not yet verified)."""
    manifest = path / MANIFEST
    return (
        manifest.is_file()
        and FORMAT in manifest.read_text(encoding="utf-8", errors="replace")[:200]
    )


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of the index at `path`, checked for format and version."""
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
        raise IndexCorrupt(f"{mpath}: unreadable manifest ({err}); {_REBUILD}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexCorrupt(f"{mpath}: not a {FORMAT} manifest; {_REBUILD}")
    if manifest.get("version") != FORMAT_VERSION:
        raise IndexCorrupt(
            f"{mpath}: index format version {manifest.get('version')!r}, this ragline reads version "
            f"{FORMAT_VERSION}; {_REBUILD}"
        )
    return manifest


def _load(path: Path, verify: bool) -> Index:
    from ragline.types import Document

    manifest = read_manifest(path)
    if verify:
        for rel, expected in manifest.get("files", {}).items():
            file = path / rel
            if not file.is_file():
                raise IndexCorrupt(f"{path}: missing file {rel}; {_REBUILD}")
            if sha256_file(file) != expected:
                raise IndexCorrupt(
                    f"{path}: checksum mismatch for {rel} (modified since indexing); {_REBUILD}"
                )
    docs = []
    try:
        with open(path / DOCUMENTS, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                docs.append(
                    Document(id=row["id"], text=row["text"], metadata=row.get("metadata", {}))
                )
    except (OSError, ValueError, KeyError) as err:
        raise IndexCorrupt(f"{path}: cannot read {DOCUMENTS} ({err}); {_REBUILD}") from None
    if len(docs) != manifest.get("documents"):
        raise IndexCorrupt(
            f"{path}: manifest counts {manifest.get('documents')} documents, {DOCUMENTS} holds {len(docs)}; {_REBUILD}"
        )
    return Index(path=path, manifest=manifest, documents=tuple(docs))


_CACHE: dict[tuple[Any, ...], Index] = {}
_CACHE_LOCK = threading.Lock()


def _fingerprint(path: Path) -> tuple[Any, ...]:
    # Any file replaced, rewritten or touched since the last open makes a new key.
    stats = []
    for file in sorted(path.rglob("*")):
        st = file.stat()
        stats.append((file.relative_to(path).as_posix(), st.st_ino, st.st_size, st.st_mtime_ns))
    return (str(path.resolve()), *stats)


def open_index(path: str | os.PathLike[str], *, verify: bool = True) -> Index:
    """Open an index directory, checking its format version and (with `verify`) every file's checksum.

    Opened indexes are shared within the process (a BM25 and a dense retriever over one directory
    read it once) until any of its files changes, as when `ragline index --add` swaps in a new one.
    """
    path = Path(path)
    if not (path / MANIFEST).is_file():
        return _load(path, verify)  # raises the right IndexNotFound
    key = (*_fingerprint(path), verify)
    with _CACHE_LOCK:
        if key not in _CACHE:
            for stale in [k for k in _CACHE if k[0] == key[0]]:
                del _CACHE[stale]
            _CACHE[key] = _load(path, verify)
        return _CACHE[key]
