"""Read documents from text, Markdown and JSONL files (gzip accepted) for indexing."""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ragline.errors import UsageError
from ragline.retrievers.index import looks_like_index
from ragline.types import Document

__all__ = ["SUPPORTED_SUFFIXES", "collect_files", "read_documents"]

log = logging.getLogger("ragline.ingest")

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".jsonl", ".jsonl.gz")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return next(
        (s for s in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True) if name.endswith(s)), ""
    )


def _walk(root: Path, exclude: set[Path]) -> list[Path]:
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        # Never read a ragline index (or the one being written) back in as documents.
        dirnames[:] = sorted(
            d
            for d in dirnames
            if (here / d).resolve() not in exclude and not looks_like_index(here / d)
        )
        files.extend(here / f for f in filenames if _suffix(here / f))
    return sorted(files)


def collect_files(
    paths: Iterable[str | os.PathLike[str]], *, exclude: Iterable[str | os.PathLike[str]] = ()
) -> list[tuple[Path, str]]:
    """Expand files and directories (recursively, sorted) into `(file, document_id)` pairs.

    Ids are paths relative to the directory given; with several inputs they are relative to
    the inputs' common parent, so `docs1/README.md` and `docs2/README.md` stay distinct.
    Directories in `exclude` and ragline index directories are skipped.
    """
    roots = [Path(p) for p in paths]
    skip = {Path(p).resolve() for p in exclude}
    for root in roots:
        if not root.exists():
            raise UsageError(f"{root}: no such file or directory")
        if root.is_file() and not _suffix(root):
            raise UsageError(
                f"{root}: unsupported file type; expected one of {', '.join(SUPPORTED_SUFFIXES)}"
            )
    base: Path | None = None
    if len(roots) > 1:
        base = Path(os.path.commonpath([str(r.resolve().parent) for r in roots]))
    out: list[tuple[Path, str]] = []
    for root in roots:
        files = _walk(root, skip) if root.is_dir() else [root]
        for f in files:
            if base is not None:
                doc_id = f.resolve().relative_to(base).as_posix()
            else:
                doc_id = f.relative_to(root).as_posix() if root.is_dir() else f.name
            out.append((f, doc_id))
    return out


def _text_document(path: Path, doc_id: str, text: str) -> Document | None:
    title = path.stem.replace("-", " ").replace("_", " ")
    lines = text.strip().splitlines()
    if lines and lines[0].startswith("# "):
        title = lines[0][2:].strip()
        lines = lines[1:]
    body = "\n".join(lines).strip()
    if not body:
        return None
    return Document(id=doc_id, text=body, metadata={"title": title, "source": str(path)})


def _jsonl_documents(path: Path, stem: str, text: str) -> Iterator[Document]:
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row: Any = json.loads(line)
        except json.JSONDecodeError as err:
            raise UsageError(f"{path}:{n}: invalid JSON: {err.msg}") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise UsageError(
                f"{path}:{n}: expected an object with a string 'text' (and optional 'id', 'title')"
            )
        raw_id = row.pop("id", None)
        doc_id = f"{stem}:{n}" if raw_id is None else str(raw_id)
        title = str(row.pop("title", "") or "")
        body = row.pop("text").strip()
        if not body:
            log.warning("%s:%d: empty text, skipped", path, n)
            continue
        yield Document(
            id=doc_id, text=body, metadata={"source": f"{path}:{n}", **row, "title": title}
        )


def _read_text(path: Path) -> str | None:
    raw = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise UsageError(f"{path}: not a valid gzip file: {err}") from None
    if not raw.strip():
        log.warning("%s: empty file, skipped", path)
        return None
    try:
        # utf-8-sig drops the byte-order mark some editors write, which would hide a "# " title.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        log.warning("%s: not UTF-8 text (byte %d), skipped", path, err.start)
        return None


def read_documents(
    paths: Iterable[str | os.PathLike[str]], *, exclude: Iterable[str | os.PathLike[str]] = ()
) -> Iterator[Document]:
    """Yield documents from files and directories.

    `.txt`/`.md`: one document per file, id = path relative to the directory given, title = the
    first `# ` heading or the file name. `.jsonl[.gz]`: one document per line with `text` and
    optional `id` and `title`; other keys become metadata. Empty and non-UTF-8 files are skipped
    with a warning; malformed JSON lines are errors naming the file and line.
    """
    for path, doc_id in collect_files(paths, exclude=exclude):
        text = _read_text(path)
        if text is None:
            continue
        if _suffix(path).startswith(".jsonl"):
            yield from _jsonl_documents(path, doc_id.rsplit(".jsonl", 1)[0], text)
        elif (doc := _text_document(path, doc_id, text)) is not None:
            yield doc
        else:
            log.warning("%s: no text after the title, skipped", path)
