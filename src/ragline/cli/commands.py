"""`ragline ask` and `ragline run`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ragline.cli.app import app
from ragline.cli.output import print_json, print_sources

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
    from ragline.pipeline.batch import run_jsonl

    report = run_jsonl(load_pipeline(pipeline, index), questions, out)
    if report.skipped:
        print(
            f"ragline: {report.skipped} of {report.total} questions already answered in {out}",
            file=sys.stderr,
        )
    print(
        f"ragline: answered {report.answered} questions; {report.total} in {out}", file=sys.stderr
    )
