"""Building, opening and verifying index directories."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from ragline.errors import IndexCorrupt, IndexNotFound, UsageError
from ragline.retrievers.index import FORMAT, FORMAT_VERSION, Index, open_index
from ragline.retrievers.indexing import build_index
from ragline.types import Document

FIX = "rebuild it with `ragline index ... --overwrite`"


def corpus() -> list[Document]:
    """Three documents with metadata of several JSON types."""
    return [
        Document(
            "tides.md", "The moon pulls the oceans.", {"title": "Tides", "source": "a/tides.md"}
        ),
        Document("bees:1", "Bees make honey.", {"title": "", "source": "b.jsonl:1", "year": 2021}),
        Document("café", "Espresso is strong coffee.", {"tags": ["drink", "hot"], "score": 0.5}),
    ]


def build(
    out: Path,
    docs: list[Document] | None = None,
    *,
    overwrite: bool = False,
    bm25: dict[str, str | None] | None = None,
) -> Index:
    """Build an index of `docs` (default: `corpus()`) at `out` without progress bars."""
    docs = corpus() if docs is None else docs
    return build_index(docs, out, overwrite=overwrite, progress=False, bm25=bm25)


def leftovers(parent: Path) -> list[str]:
    """Hidden temp or backup directories that an atomic write left beside its target."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def as_rows(
    docs: tuple[Document, ...] | list[Document],
) -> list[tuple[str, str, dict[str, object]]]:
    """Documents as comparable `(id, text, metadata)` rows, without the chunk bookkeeping keys."""
    chunk_keys = {"source_id", "chunk", "char_start", "char_end"}
    return [
        (d.id, d.text, {k: v for k, v in d.metadata.items() if k not in chunk_keys}) for d in docs
    ]


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """A freshly built index directory of `corpus()`."""
    build(tmp_path / "idx")
    return tmp_path / "idx"


def test_round_trip_preserves_documents_ids_and_metadata(built: Path) -> None:
    index = open_index(built)

    assert index.path == built
    assert as_rows(index.documents) == as_rows(corpus())


def test_build_returns_the_same_documents_as_open(tmp_path: Path) -> None:
    index = build(tmp_path / "idx")

    assert as_rows(index.documents) == as_rows(open_index(tmp_path / "idx").documents)


def test_manifest_records_format_count_components_and_checksums(built: Path) -> None:
    manifest = json.loads((built / "manifest.json").read_text(encoding="utf-8"))

    assert manifest["format"] == FORMAT == "ragline-index"
    assert manifest["version"] == FORMAT_VERSION
    assert manifest["documents"] == 3
    assert manifest["components"]["bm25"] == {"stemmer": "english", "stopwords": "en"}
    on_disk = {
        p.relative_to(built).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in built.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    assert "documents.jsonl" in on_disk
    assert any(name.startswith("bm25/") for name in on_disk)
    assert manifest["files"] == on_disk


def test_custom_bm25_settings_are_recorded_as_the_component(tmp_path: Path) -> None:
    index = build(tmp_path / "idx", bm25={"stemmer": None, "stopwords": None})

    assert index.component("bm25") == {"stemmer": None, "stopwords": None}


def test_missing_component_is_corrupt_and_names_what_was_built(built: Path) -> None:
    with pytest.raises(IndexCorrupt, match="no 'dense' component") as err:
        open_index(built).component("dense")
    assert "bm25" in str(err.value)


def test_empty_corpus_is_a_usage_error_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no documents to index"):
        build(tmp_path / "idx", [])

    assert list(tmp_path.iterdir()) == []


def test_duplicate_ids_name_both_sources_and_write_nothing(tmp_path: Path) -> None:
    docs = [
        Document("same", "first text", {"source": "one.md"}),
        Document("other", "middle text", {"source": "two.md"}),
        Document("same", "second text", {"source": "three.jsonl:4"}),
    ]

    with pytest.raises(UsageError, match="duplicate document id 'same'") as err:
        build(tmp_path / "idx", docs)

    assert "one.md" in str(err.value) and "three.jsonl:4" in str(err.value)
    assert not (tmp_path / "idx").exists()
    assert leftovers(tmp_path) == []


def test_existing_directory_without_overwrite_is_a_usage_error(built: Path) -> None:
    before = (built / "documents.jsonl").read_bytes()

    with pytest.raises(UsageError, match="already exists"):
        build(built, [Document("new", "new text")])

    assert (built / "documents.jsonl").read_bytes() == before


def test_overwrite_replaces_the_index_and_leaves_no_temp_dirs(built: Path) -> None:
    build(built, [Document("new", "entirely new text")], overwrite=True)

    index = open_index(built)
    assert [d.id for d in index.documents] == ["new"]
    assert index.manifest["documents"] == 1
    assert leftovers(built.parent) == []


def test_failed_overwrite_keeps_the_old_index(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr("ragline.retrievers.indexing.build_bm25", fail)

    with pytest.raises(RuntimeError, match="disk full"):
        build(built, [Document("new", "new text")], overwrite=True)

    assert as_rows(open_index(built).documents) == as_rows(corpus())
    assert leftovers(built.parent) == []


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_corpus_of_only_stop_words_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        build(tmp_path / "idx", [Document("a", "the and of"), Document("b", "it is")])


def test_unreadable_manifest_is_corrupt_with_the_fix(built: Path) -> None:
    (built / "manifest.json").write_text("{not json", encoding="utf-8")

    with pytest.raises(IndexCorrupt, match="unreadable manifest") as err:
        open_index(built)
    assert FIX in str(err.value)


def test_other_format_version_is_corrupt_with_the_fix(built: Path) -> None:
    mpath = built / "manifest.json"
    manifest = json.loads(mpath.read_text(encoding="utf-8"))
    manifest["version"] = FORMAT_VERSION + 1
    mpath.write_text(json.dumps(manifest), encoding="utf-8")

    with pytest.raises(IndexCorrupt, match=f"version {FORMAT_VERSION + 1}") as err:
        open_index(built)
    assert FIX in str(err.value)


def test_manifest_of_another_format_is_corrupt(built: Path) -> None:
    (built / "manifest.json").write_text(json.dumps({"format": "other"}), encoding="utf-8")

    with pytest.raises(IndexCorrupt, match="not a ragline-index manifest"):
        open_index(built)


def test_modified_documents_fail_the_checksum_with_the_fix(built: Path) -> None:
    docs = built / "documents.jsonl"
    docs.write_text(docs.read_text(encoding="utf-8").replace("honey", "money"), encoding="utf-8")

    with pytest.raises(
        IndexCorrupt, match=re.escape("checksum mismatch for documents.jsonl")
    ) as err:
        open_index(built)
    assert FIX in str(err.value)


def test_modified_documents_open_without_verify(built: Path) -> None:
    docs = built / "documents.jsonl"
    docs.write_text(docs.read_text(encoding="utf-8").replace("honey", "money"), encoding="utf-8")

    assert open_index(built, verify=False).documents[1].text == "Bees make money."


def test_deleted_bm25_file_is_corrupt_with_the_fix(built: Path) -> None:
    victim = sorted((built / "bm25").iterdir())[0]
    victim.unlink()

    with pytest.raises(IndexCorrupt, match="missing file") as err:
        open_index(built)
    assert f"bm25/{victim.name}" in str(err.value)
    assert FIX in str(err.value)


def test_missing_directory_is_not_found_with_exit_code_2(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFound, match="index directory not found") as err:
        open_index(tmp_path / "nowhere")
    assert err.value.exit_code == 2
    assert isinstance(err.value, UsageError)


def test_directory_without_manifest_is_not_found_with_exit_code_2(tmp_path: Path) -> None:
    (tmp_path / "documents.jsonl").write_text("", encoding="utf-8")

    with pytest.raises(IndexNotFound, match=re.escape("no manifest.json")) as err:
        open_index(tmp_path)
    assert err.value.exit_code == 2
    assert "ragline index" in str(err.value)
