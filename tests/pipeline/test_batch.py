"""Resumable batch runs in the library (the CLI's `ragline run` is a thin wrapper)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragline import Answer, Pipeline, RunState
from ragline.errors import UsageError
from ragline.pipeline.batch import answered_ids, question_id, read_questions, run_jsonl


class Echo:
    name = "echo"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def run(self, state: RunState) -> RunState:
        self.asked.append(state.query.text)
        return state.evolve(answer=Answer(text=state.query.text.upper(), question=state.query.text))

    def stream(self, state: RunState) -> Iterator[str | RunState]:
        yield self.run(state)


def write_lines(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_ids_default_to_a_hash_of_the_question(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "q.jsonl", [{"question": "b?"}, {"question": "a?", "id": 7, "gold": "x"}]
    )
    queries = read_questions(path)
    assert [q.id for q in queries] == [question_id("b?"), "7"]
    assert queries[1].metadata == {"gold": "x"}


def test_inserting_a_question_does_not_skip_the_next_one(tmp_path: Path) -> None:
    echo = Echo()
    pipe = Pipeline([echo])
    questions, out = tmp_path / "q.jsonl", tmp_path / "a.jsonl"
    write_lines(questions, [{"question": "one"}, {"question": "three"}])
    run_jsonl(pipe, questions, out, progress=False)
    write_lines(questions, [{"question": "one"}, {"question": "two"}, {"question": "three"}])
    report = run_jsonl(pipe, questions, out, progress=False)
    assert (report.total, report.skipped, report.answered) == (3, 2, 1)
    assert echo.asked == ["one", "three", "two"]


def test_torn_last_line_is_dropped_and_redone(tmp_path: Path) -> None:
    pipe = Pipeline([Echo()])
    questions, out = (
        write_lines(
            tmp_path / "q.jsonl", [{"question": "x", "id": "a"}, {"question": "y", "id": "b"}]
        ),
        tmp_path / "a.jsonl",
    )
    run_jsonl(pipe, questions, out, progress=False)
    lines = out.read_text(encoding="utf-8").splitlines()
    out.write_text(lines[0] + "\n" + lines[1][:10], encoding="utf-8")
    assert answered_ids(out) == {"a"}
    assert out.read_text(encoding="utf-8") == lines[0] + "\n"
    run_jsonl(pipe, questions, out, progress=False)
    assert [json.loads(x)["id"] for x in out.read_text(encoding="utf-8").splitlines()] == ["a", "b"]


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"5\n", "expected an answer object"),
        (b"not json\n{}\n", "not a JSON line"),
        (b"\xff\xfe\n", "not UTF-8"),
    ],
)
def test_bad_answers_files_are_usage_errors(tmp_path: Path, content: bytes, pattern: str) -> None:
    out = tmp_path / "a.jsonl"
    out.write_bytes(content)
    with pytest.raises(UsageError, match=pattern):
        answered_ids(out)


def test_out_must_not_be_the_questions_file_or_a_directory(tmp_path: Path) -> None:
    questions = write_lines(tmp_path / "q.jsonl", [{"question": "x"}])
    pipe = Pipeline([Echo()])
    with pytest.raises(UsageError, match="is the questions file"):
        run_jsonl(pipe, questions, questions, progress=False)
    with pytest.raises(UsageError, match="is a directory"):
        run_jsonl(pipe, questions, tmp_path, progress=False)


def test_non_utf8_questions_file(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_bytes(b'{"question": "caf\xe9"}\n')
    with pytest.raises(UsageError, match="not UTF-8"):
        read_questions(path)
