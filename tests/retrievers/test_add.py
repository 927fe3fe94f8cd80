"""Adding documents to an index: the result equals a full rebuild, and failures leave it untouched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragline.errors import IndexNotFound, UsageError
from ragline.retrievers.bm25 import BM25Retriever
from ragline.retrievers.chunking import ChunkSettings, chunk_document
from ragline.retrievers.dense import DenseRetriever
from ragline.retrievers.index import open_index
from ragline.retrievers.indexing import add_documents, build_index
from ragline.types import Document
from tests.clitools import ragline

QUESTIONS = ["rain thunder", "spaghetti water park", "the striker scored", "doctor bank savings"]
PARAPHRASES = ["automobile maintenance", "puppy", "storm forecast", "classical music recital"]


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under `path` by relative name."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def added_and_rebuilt(
    tmp_path_factory: pytest.TempPathFactory, corpus: tuple[Document, ...]
) -> tuple[Path, Path]:
    """`CORPUS` indexed (BM25 + flat dense) as first half then `add_documents`, and all at once."""
    docs = list(corpus)
    root = tmp_path_factory.mktemp("add")
    build_index(docs[:5], root / "added", methods=["bm25", "dense"], progress=False)
    add_documents(root / "added", docs[5:], progress=False)
    build_index(docs, root / "rebuilt", methods=["bm25", "dense"], progress=False)
    return root / "added", root / "rebuilt"


def test_added_documents_follow_the_old_ones_as_in_a_rebuild(
    added_and_rebuilt: tuple[Path, Path],
) -> None:
    added, rebuilt = (open_index(p) for p in added_and_rebuilt)

    assert [(d.id, d.text, dict(d.metadata)) for d in added.documents] == [
        (d.id, d.text, dict(d.metadata)) for d in rebuilt.documents
    ]
    for key in ("documents", "sources", "chunking", "components"):
        assert added.manifest[key] == rebuilt.manifest[key]
    assert added.manifest["documents"] == added.manifest["sources"] == 10


def test_bm25_after_add_scores_exactly_as_a_rebuild(
    added_and_rebuilt: tuple[Path, Path],
) -> None:
    added, rebuilt = (BM25Retriever(index=str(p), top_k=10) for p in added_and_rebuilt)

    for question in QUESTIONS:
        hits = added.search(question)
        assert hits and hits == rebuilt.search(question)


def test_dense_flat_after_add_scores_as_a_rebuild(added_and_rebuilt: tuple[Path, Path]) -> None:
    added, rebuilt = (DenseRetriever(index=str(p), top_k=10) for p in added_and_rebuilt)

    for question in PARAPHRASES:
        got, want = added.search(question), rebuilt.search(question)
        assert [i for i, _ in got] == [i for i, _ in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)
    vectors = [np.load(p / "dense" / "embeddings.npy") for p in added_and_rebuilt]
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-5)


def test_manifest_checksums_cover_the_new_files(added_and_rebuilt: tuple[Path, Path]) -> None:
    added, _ = added_and_rebuilt

    files = manifest(added)["files"]

    assert sorted(files) == sorted(n for n in snapshot(added) if n != "manifest.json")
    open_index(added, verify=True)


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A BM25 index of two documents."""
    docs = [Document("a", "Owls hunt at night."), Document("b", "Otters float on rivers.")]
    build_index(docs, tmp_path / "idx", progress=False)
    return tmp_path / "idx"


@pytest.mark.parametrize(
    "new",
    [
        [Document("a", "Another text under an existing id.")],
        [Document("c", "Crows are clever."), Document("c", "Crows again.")],
    ],
    ids=["existing-id", "twice-in-new"],
)
def test_duplicate_id_is_a_usage_error_and_changes_nothing(
    small: Path, new: list[Document]
) -> None:
    before = snapshot(small)

    with pytest.raises(UsageError, match=r"duplicate document id '[ac]'"):
        add_documents(small, new, progress=False)

    assert snapshot(small) == before
    assert sorted(p.name for p in small.parent.iterdir()) == ["idx"]


def test_existing_id_names_the_existing_index(small: Path) -> None:
    with pytest.raises(UsageError, match="the existing index"):
        add_documents(small, [Document("b", "Beavers build dams.")], progress=False)


def test_build_rejects_a_duplicate_source_id_whose_chunk_ids_differ(tmp_path: Path) -> None:
    long = "Herons wade in the shallows. They spear fish with their beaks. Young herons nest."
    docs = [Document("x", "Owls hunt at night."), Document("x", long)]

    with pytest.raises(UsageError, match="duplicate document id 'x'"):
        build_index(
            docs, tmp_path / "idx", chunking={"max_tokens": 8, "overlap": 2}, progress=False
        )


def test_adding_nothing_is_a_usage_error(small: Path) -> None:
    with pytest.raises(UsageError, match="no documents to add"):
        add_documents(small, [], progress=False)


def test_adding_to_a_missing_index_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFound, match="index directory not found"):
        add_documents(tmp_path / "nowhere", [Document("a", "text")], progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_new_retriever_sees_the_added_documents(small: Path) -> None:
    assert BM25Retriever(index=str(small)).search("crows") == []

    add_documents(small, [Document("c", "Crows are clever birds.")], progress=False)

    hits = BM25Retriever(index=str(small)).search("crows")
    assert [open_index(small).documents[i].id for i, _ in hits] == ["c"]


def test_added_documents_are_chunked_with_the_index_settings(tmp_path: Path) -> None:
    settings = {"max_tokens": 8, "overlap": 2}
    build_index(
        [Document("short", "Owls hunt at night.")],
        tmp_path / "idx",
        chunking=settings,
        progress=False,
    )
    long = Document(
        "long",
        "Herons wade in the shallows. They spear fish with their beaks. "
        "Young herons stay in the nest for weeks. Their parents bring them food all day long.",
    )

    index = add_documents(tmp_path / "idx", [long], progress=False)

    expected = chunk_document(long, ChunkSettings(**settings))
    assert len(expected) > 2
    assert [(d.id, d.text, dict(d.metadata)) for d in index.documents[1:]] == [
        (d.id, d.text, dict(d.metadata)) for d in expected
    ]
    assert all(len(d.text.split()) <= 8 for d in index.documents)
    assert index.manifest["chunking"] == {**settings, "enabled": True}
    assert index.manifest["sources"] == 2 and index.manifest["documents"] == 1 + len(expected)


def test_adding_to_an_ivf_index_keeps_its_cells_and_finds_the_new_document(
    tmp_path: Path, corpus: tuple[Document, ...]
) -> None:
    docs = list(corpus)
    dense = {"index": "ivf", "nlist": 2}
    build_index(docs[:8], tmp_path / "idx", methods=["dense"], dense=dense, progress=False)

    index = add_documents(tmp_path / "idx", docs[8:], progress=False)

    assert index.component("dense")["nlist"] == 2
    stage = DenseRetriever(index=str(tmp_path / "idx"), top_k=1, nprobe=2)
    assert [index.documents[i].id for i, _ in stage.search("classical music recital")] == ["piano"]


def test_cli_index_add_appends_with_the_index_settings(tmp_path: Path) -> None:
    for name, text in [
        ("owls.md", "# Owls\n\nOwls hunt at night."),
        ("crows.md", "Crows are clever."),
    ]:
        (tmp_path / name).write_text(text, encoding="utf-8")
    out = tmp_path / "idx"
    assert ragline("index", str(tmp_path / "owls.md"), "--out", str(out)).returncode == 0

    proc = ragline("index", str(tmp_path / "crows.md"), "--out", str(out), "--add", "--json")

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "index": str(out),
        "documents": 2,
        "sources": 2,
        "components": ["bm25"],
    }
    assert [d.id for d in open_index(out).documents] == ["owls.md", "crows.md"]
    again = ragline("index", str(tmp_path / "crows.md"), "--out", str(out), "--add")
    assert again.returncode == 2 and "duplicate document id 'crows.md'" in again.stderr
    for extra in (["--method", "bm25"], ["--overwrite"]):
        proc = ragline("index", str(tmp_path / "owls.md"), "--out", str(out), "--add", *extra)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
