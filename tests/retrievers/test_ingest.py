"""Reading text, Markdown and JSONL files into documents."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from ragline.errors import UsageError
from ragline.retrievers.ingest import read_documents
from ragline.types import Document


def write(path: Path, text: str) -> Path:
    """Write UTF-8 `text` to `path`, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(rows: list[dict[str, object]]) -> str:
    """Rows as JSON lines."""
    return "".join(json.dumps(r) + "\n" for r in rows)


def read(*paths: Path) -> list[Document]:
    """All documents from `paths`, in order."""
    return list(read_documents(paths))


def test_markdown_title_comes_from_first_heading_and_is_removed_from_text(tmp_path: Path) -> None:
    write(
        tmp_path / "corpus" / "guides" / "tides.md", "# How Tides Work\n\nThe moon pulls water.\n"
    )

    [doc] = read(tmp_path / "corpus")

    assert doc.id == "guides/tides.md"
    assert doc.title == "How Tides Work"
    assert doc.text == "The moon pulls water."


def test_text_without_heading_takes_title_from_file_stem(tmp_path: Path) -> None:
    write(tmp_path / "harbour.txt", "Boats wait in the harbour.\n")

    [doc] = read(tmp_path)

    assert doc.title == "harbour"
    assert doc.text == "Boats wait in the harbour."


def test_file_given_directly_is_identified_by_its_name(tmp_path: Path) -> None:
    path = write(tmp_path / "deep" / "dir" / "note.md", "# Note\nbody")

    [doc] = read(path)

    assert doc.id == "note.md"
    assert doc.metadata["source"] == str(path)


def test_jsonl_keeps_id_and_title_and_moves_extra_keys_to_metadata(tmp_path: Path) -> None:
    row = {"id": "q-7", "title": "Krill", "text": "Krill are small.", "lang": "en", "year": 2020}
    write(tmp_path / "facts.jsonl", jsonl([row]))

    [doc] = read(tmp_path / "facts.jsonl")

    assert (doc.id, doc.title, doc.text) == ("q-7", "Krill", "Krill are small.")
    assert doc.metadata["lang"] == "en"
    assert doc.metadata["year"] == 2020
    assert "id" not in doc.metadata and "text" not in doc.metadata


def test_jsonl_row_without_id_gets_stem_and_line_number(tmp_path: Path) -> None:
    write(
        tmp_path / "sub" / "faq.jsonl", jsonl([{"text": "one"}]) + "\n" + jsonl([{"text": "two"}])
    )

    docs = read(tmp_path)

    assert [d.id for d in docs] == ["sub/faq:1", "sub/faq:3"]
    assert [d.title for d in docs] == ["", ""]


def test_gzipped_jsonl_is_read_like_plain_jsonl(tmp_path: Path) -> None:
    data = jsonl([{"id": "a", "text": "alpha"}, {"text": "beta"}]).encode()
    (tmp_path / "rows.jsonl.gz").write_bytes(gzip.compress(data))

    docs = read(tmp_path / "rows.jsonl.gz")

    assert [(d.id, d.text) for d in docs] == [("a", "alpha"), ("rows:2", "beta")]


def test_directory_is_read_recursively_in_sorted_order_ignoring_other_files(tmp_path: Path) -> None:
    write(tmp_path / "b.txt", "bee")
    write(tmp_path / "a" / "z.md", "zed")
    write(tmp_path / "a" / "b.txt", "ab")
    write(tmp_path / "c.jsonl", jsonl([{"text": "sea"}]))
    write(tmp_path / "picture.png", "not text")
    write(tmp_path / "a" / "notes.rst", "ignored")

    docs = read(tmp_path)

    assert [d.id for d in docs] == ["a/b.txt", "a/z.md", "b.txt", "c:1"]


@pytest.mark.parametrize("name", ["photo.png", "table.csv", "notes.jsonl.bz2"])
def test_unsupported_file_given_directly_is_a_usage_error(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, "data")

    with pytest.raises(UsageError, match="unsupported file type") as err:
        read(path)
    assert name in str(err.value)
    assert ".jsonl.gz" in str(err.value)


def test_missing_path_is_a_usage_error_with_exit_code_2(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file or directory") as err:
        read(tmp_path / "absent.md")
    assert err.value.exit_code == 2


def test_malformed_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", jsonl([{"text": "fine"}]) + '{"text": "oops"\n')

    with pytest.raises(UsageError, match="invalid JSON") as err:
        read(path)
    assert f"{path}:2" in str(err.value)


@pytest.mark.parametrize("row", ['["a list"]', '{"title": "no text"}', '{"text": 5}'])
def test_jsonl_row_without_string_text_is_a_usage_error(tmp_path: Path, row: str) -> None:
    path = write(tmp_path / "rows.jsonl", row + "\n")

    with pytest.raises(UsageError, match="string 'text'") as err:
        read(path)
    assert f"{path}:1" in str(err.value)


def test_corrupt_gzip_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl.gz"
    path.write_bytes(b"this is not gzip data")

    with pytest.raises(UsageError, match="not a valid gzip file"):
        read(path)


def test_zero_byte_file_is_skipped_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    write(tmp_path / "kept.txt", "kept")

    with caplog.at_level(logging.WARNING, logger="ragline.ingest"):
        docs = read(tmp_path)

    assert [d.id for d in docs] == ["kept.txt"]
    assert any("empty.txt" in r.message and "empty file" in r.message for r in caplog.records)


def test_non_utf8_file_is_skipped_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    write(tmp_path / "kept.md", "kept")

    with caplog.at_level(logging.WARNING, logger="ragline.ingest"):
        docs = read(tmp_path)

    assert [d.id for d in docs] == ["kept.md"]
    assert any("latin1.txt" in r.message and "UTF-8" in r.message for r in caplog.records)


def test_markdown_with_only_a_heading_is_skipped_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "title-only.md", "# Just a title\n\n   \n")

    with caplog.at_level(logging.WARNING, logger="ragline.ingest"):
        docs = read(tmp_path)

    assert docs == []
    assert any("title-only.md" in r.message for r in caplog.records)


def test_jsonl_row_with_blank_text_is_skipped_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        tmp_path / "rows.jsonl", jsonl([{"id": "x", "text": "  \n "}, {"id": "y", "text": "ok"}])
    )

    with caplog.at_level(logging.WARNING, logger="ragline.ingest"):
        docs = read(path)

    assert [d.id for d in docs] == ["y"]
    assert any(
        f"{path}:1" in r.getMessage() and "empty text" in r.getMessage() for r in caplog.records
    )


def test_utf8_bom_does_not_hide_the_heading(tmp_path: Path) -> None:
    (tmp_path / "bom.md").write_bytes("\ufeff# Heading\nbody".encode())

    [doc] = read(tmp_path)

    assert (doc.title, doc.text) == ("Heading", "body")


def test_jsonl_null_id_falls_back_to_default_id(tmp_path: Path) -> None:
    write(tmp_path / "rows.jsonl", jsonl([{"id": None, "text": "one"}]))

    [doc] = read(tmp_path)

    assert doc.id == "rows:1"
