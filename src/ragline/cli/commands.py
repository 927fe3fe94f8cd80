"""`ragline ask` and `ragline run`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ragline.cli.app import app
from ragline.cli.output import print_json, print_sources
from ragline.errors import UsageError
from ragline.progress import progress_bar

if TYPE_CHECKING:
    from ragline.pipeline import Pipeline


def load_pipeline(pipeline: Path | None, index: Path | None) -> Pipeline:
    """The pipeline to run: the given YAML (with --index overriding its retrievers) or the default one."""
    from ragline.bundled import default_index, default_pipeline_path
    from ragline.pipeline import Pipeline

    if pipeline is None:
        pipeline = default_pipeline_path()
        index = index or default_index()
    overrides = {"retriever.": {"index": str(index)}} if index is not None else None
    return Pipeline.from_yaml(pipeline, overrides=overrides)


@app.command("ask")
def ask_cmd(
    question: Annotated[str, typer.Argument(help="The question.")],
    index: Annotated[
        Path | None,
        typer.Option(
            "--index", "-i", help="Index directory (default: the bundled example corpus)."
        ),
    ] = None,
    pipeline: Annotated[
        Path | None,
        typer.Option("--pipeline", "-p", help="Pipeline YAML (default: the bundled default)."),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the answer as one JSON object (docs/answer.schema.json)."
        ),
    ] = False,
    no_stream: Annotated[
        bool,
        typer.Option(
            "--no-stream", help="Print the answer when complete instead of token by token."
        ),
    ] = False,
) -> None:
    """Answer a question from the indexed documents, then list the numbered sources."""
    if not question.strip():
        raise UsageError("question: expected a non-empty question, got an empty string")
    pipe = load_pipeline(pipeline, index)
    if as_json or no_stream:
        answer = pipe.run(question)
        if as_json:
            print_json(answer.to_dict())
            return
        print(answer.text)
    else:
        from ragline.types import Answer

        final = None
        for item in pipe.stream(question):
            if isinstance(item, Answer):
                final = item
            else:
                sys.stdout.write(item)
                sys.stdout.flush()
        print()
        assert final is not None
        answer = final
    print_sources(answer)


def read_questions(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UsageError(f"--questions {path}: no such file")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
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
        row["id"] = str(row.get("id", f"line-{n}"))
        rows.append(row)
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise UsageError(f"{path}: duplicate question id {dup!r}")
    return rows


def _answered(out: Path) -> set[str]:
    """Ids already answered in `out`; a torn last line (an interrupted write) is cut off first."""
    if not out.exists():
        return set()
    done: set[str] = set()
    keep: list[str] = []
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    for n, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                print(
                    f"ragline: {out}:{n}: dropping an incomplete last line from an interrupted run",
                    file=sys.stderr,
                )
                break
            raise UsageError(
                f"{out}:{n}: not a JSON line; is --out an answers file from `ragline run`?"
            ) from None
        done.add(str(row.get("id")))
        keep.append(line if line.endswith("\n") else line + "\n")
    if len(keep) != len(lines) or (lines and not lines[-1].endswith("\n")):
        from ragline.fsutil import atomic_write_text

        atomic_write_text(out, "".join(keep))
    return done


@app.command("run")
def run_cmd(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML.")],
    questions: Annotated[
        Path,
        typer.Option("--questions", "-q", help='JSONL, one {"question": ..., "id": ...} per line.'),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="JSONL answers; questions already in it are skipped."),
    ],
    index: Annotated[
        Path | None, typer.Option("--index", "-i", help="Override the retrievers' index directory.")
    ] = None,
) -> None:
    """Answer a file of questions; resumable: rerunning skips questions already answered in --out."""
    from ragline.types import Query

    rows = read_questions(questions)
    done = _answered(out)
    todo = [r for r in rows if r["id"] not in done]
    pipe = load_pipeline(pipeline, index)
    if done:
        print(
            f"ragline: {len(rows) - len(todo)} of {len(rows)} questions already answered in {out}",
            file=sys.stderr,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(out, "a", encoding="utf-8") as f,
        progress_bar("answering", total=len(todo)) as advance,
    ):
        for row in todo:
            answer = pipe.run(Query(row["question"], id=row["id"]))
            # One write per line, flushed and synced: a crash leaves at most one torn line.
            f.write(json.dumps(answer.to_dict(), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            advance(1)
    print(f"ragline: answered {len(todo)} questions; {len(rows)} in {out}", file=sys.stderr)
