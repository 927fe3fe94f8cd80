"""The example corpus and default pipeline that ship with ragline, and the index built from them."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from ragline.paths import cache_dir

__all__ = ["default_index", "default_pipeline_path", "example_corpus_path"]

log = logging.getLogger("ragline.bundled")

_PACKAGED = Path(__file__).parent / "_bundled"
# In a source checkout (editable install) the files live in the repository's examples/ folder.
_CHECKOUT = Path(__file__).resolve().parents[2] / "examples"


def _find(packaged: str, checkout: str) -> Path:
    for path in (_PACKAGED / packaged, _CHECKOUT / checkout):
        if path.exists():
            return path
    raise FileNotFoundError(
        f"ragline's bundled {packaged} is missing from this installation; reinstall ragline"
    )


def example_corpus_path() -> Path:
    """The folder of Markdown documents about the (invented) Lantern Isles."""
    return _find("corpus", "corpus")


def default_pipeline_path() -> Path:
    """The default pipeline YAML used by `ragline ask` without `--pipeline`."""
    return _find("default.yaml", "pipelines/default.yaml")


def default_index(*, progress: bool = True) -> Path:
    """The index of the example corpus in the user's cache, built on first use.

    The directory name carries a hash of the corpus, so an edited corpus gets a fresh index.
    """
    from ragline.errors import IndexError_
    from ragline.retrievers.index import FORMAT_VERSION, open_index
    from ragline.retrievers.indexing import build_index
    from ragline.retrievers.ingest import read_documents

    corpus = example_corpus_path()
    digest = hashlib.sha256()
    for f in sorted(corpus.rglob("*")):
        if f.is_file():
            digest.update(f.relative_to(corpus).as_posix().encode() + b"\0" + f.read_bytes())
    digest.update(f"format {FORMAT_VERSION}".encode())
    path = cache_dir("indexes", f"example-{digest.hexdigest()[:16]}")
    if (path / "manifest.json").is_file():
        try:
            open_index(path)
            return path
        except IndexError_ as err:
            # The user cannot rebuild a cache entry by hand; do it for them.
            log.warning("rebuilding the example index: %s", err)
    build_index(read_documents([corpus]), path, overwrite=True, progress=progress)
    return path
