"""Resumable batch runs: questions from JSONL, one answer per line, skipping what is already answered."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ragline.errors import UsageError
from ragline.fsutil import atomic_write_text
from ragline.types import Query

if TYPE_CHECKING:
    from ragline.pipeline.pipeline import Pipeline

__all__ = ["BatchReport", "answered_ids", "question_id", "read_questions", "run_jsonl"]

log = logging.getLogger("ragline.batch")


def question_id(text: str) -> str:
    """The id of a question given without one: a hash of its text, so reordering a file keeps ids."""
    return "q-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _read_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise UsageError(f"{what} {path}: no such file")
    try:
        return path.read_text(encoding="utf-8").splitlines(keepends=True)
    except UnicodeDecodeError as err:
        raise UsageError(f"{path}: not UTF-8 text (byte {err.start})") from None


def read_questions(path: str | os.PathLike[str]) -> list[Query]:
    """Questions from JSONL lines `{"question": ..., "id": ...}`; ids default to a hash of the text."""
    path = Path(path)
    queries: list[Query] = []
    seen: set[str] = set()
    for n, line in enumerate(_read_lines(path, "--questions"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UsageError(f"{path}:{n}: invalid JSON: {err.msg}") from None
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("question"), str)
            or not row["question"].strip()
        ):
            raise UsageError(
                f"{path}:{n}: expected an object with a non-empty string 'question' (and optional 'id')"
            )
        qid = str(row["id"]) if row.get("id") is not None else question_id(row["question"])
        if qid in seen:
            raise UsageError(f"{path}:{n}: duplicate question id {qid!r}")
        seen.add(qid)
        extra = {k: v for k, v in row.items() if k not in ("question", "id")}
        queries.append(Query(row["question"], id=qid, metadata=extra))
    return queries


def answered_ids(out: str | os.PathLike[str]) -> set[str]:
    """Ids already answered in `out`; a torn last line (an interrupted write) is cut off first."""
    out = Path(out)
    if not out.exists():
        return set()
    lines = _read_lines(out, "--out")
    done: set[str] = set()
    keep: list[str] = []
    for n, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                log.warning(
                    "%s:%d: dropping an incomplete last line from an interrupted run", out, n
                )
                break
            raise UsageError(
                f"{out}:{n}: not a JSON line; is --out an answers file from `ragline run`?"
            ) from None
        if not isinstance(row, dict) or "id" not in row:
            raise UsageError(
                f"{out}:{n}: expected an answer object with an 'id'; is --out an answers file?"
            )
        done.add(str(row["id"]))
        keep.append(line if line.endswith("\n") else line + "\n")
    if keep != lines:
        atomic_write_text(out, "".join(keep))
    return done


@dataclass(frozen=True)
class BatchReport:
    """How a batch run went: questions in the file, already answered before, answered now."""

    total: int
    skipped: int
    answered: int


def run_jsonl(
    pipeline: Pipeline,
    questions: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    progress: bool = True,
) -> BatchReport:
    """Answer every question of `questions` not yet in `out`, appending one JSON answer per line.

    Each line is written whole, flushed and synced, so an interrupted run leaves at most one
    torn line, which the next run drops and redoes.
    """
    from ragline.progress import progress_bar

    questions, out = Path(questions), Path(out)
    if out.is_dir():
        raise UsageError(f"--out {out}: is a directory; expected a .jsonl file")
    if out.exists() and questions.exists() and out.resolve() == questions.resolve():
        raise UsageError(f"--out {out}: is the questions file; write answers to another file")
    queries = read_questions(questions)
    done = answered_ids(out)
    todo = [q for q in queries if q.id not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(out, "a", encoding="utf-8") as f,
        progress_bar("answering", total=len(todo), enabled=progress) as advance,
    ):
        for query in todo:
            answer = pipeline.run(query)
            f.write(json.dumps(answer.to_dict(), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            advance(1)
    return BatchReport(total=len(queries), skipped=len(queries) - len(todo), answered=len(todo))
