"""`ragline compress`: compress a list of documents for a question and show what was kept."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ragline.cli.app import app
from ragline.cli.output import print_json
from ragline.errors import UsageError


@app.command("compress")
def compress_cmd(
    question: Annotated[
        str, typer.Option("--question", "-q", help="The question the documents should answer.")
    ] = "",
    documents: Annotated[
        Path,
        typer.Option(
            "--documents", "-d", help='A .jsonl file: one {"id", "title", "text"} per line.'
        ),
    ] = Path("-"),
    rate: Annotated[
        float | None, typer.Option(help="Fraction of the tokens to keep (default 0.5).")
    ] = None,
    target_tokens: Annotated[
        int | None, typer.Option("--target-tokens", help="Tokens to keep (instead of --rate).")
    ] = None,
    method: Annotated[
        str, typer.Option(help="longllmlingua (question-aware) or llmlingua (question-agnostic).")
    ] = "longllmlingua",
    model: Annotated[str, typer.Option(help="The scoring LM.")] = "smollm2-135m-instruct",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print compressed texts, rate and token counts as JSON.")
    ] = False,
) -> None:
    """Compress documents for a question: the kept documents, their ids and the achieved rate."""
    from ragline.compressors import LLMLinguaCompressor, LongLLMLinguaCompressor
    from ragline.retrievers.ingest import read_documents

    if method not in ("longllmlingua", "llmlingua"):
        raise UsageError(f"--method: expected longllmlingua or llmlingua, got {method!r}")
    if rate is not None and target_tokens is not None:
        raise UsageError("--rate and --target-tokens exclude each other; give one")
    if str(documents) == "-":
        raise UsageError("--documents: a .jsonl file of documents is required")
    if not documents.is_file():
        raise UsageError(f"--documents: {documents}: no such file")
    if not documents.name.lower().endswith((".jsonl", ".jsonl.gz")):
        raise UsageError(f"--documents: {documents}: expected a .jsonl file")
    if method == "longllmlingua" and not question.strip():
        raise UsageError("--question: longllmlingua needs a non-empty question")
    docs = list(read_documents([documents]))
    params: dict[str, object] = {"model": model, "device": device}
    if rate is not None:
        params["rate"] = rate
    if target_tokens is not None:
        params["target_tokens"] = target_tokens
    cls = LongLLMLinguaCompressor if method == "longllmlingua" else LLMLinguaCompressor
    stage = cls(**params)
    started = time.perf_counter()
    result = stage.compress(question, docs)
    seconds = time.perf_counter() - started
    reports = {r.id: r for r in result.reports}
    if as_json:
        print_json(
            {
                "question": question,
                "method": method,
                "requested": target_tokens if target_tokens is not None else stage.config.rate,
                "rate": round(result.rate, 4),
                "tokens_in": result.tokens_in,
                "tokens_out": result.tokens_out,
                "seconds": round(seconds, 3),
                "documents": [
                    {
                        "id": d.id,
                        "title": d.title,
                        "text": d.text,
                        "rank": reports[d.id].rank,
                        "keep_ratio": round(reports[d.id].keep_ratio, 4),
                        "tokens_in": reports[d.id].tokens_in,
                        "tokens_out": reports[d.id].tokens_out,
                    }
                    for d in result.documents
                ],
                "dropped": list(result.dropped),
            }
        )
        return
    for d in result.documents:
        r = reports[d.id]
        title = f" {d.title}" if d.title else ""
        print(f"[{d.id}]{title} (rank {(r.rank or 0) + 1}, {r.tokens_out}/{r.tokens_in} tokens)")
        print(d.text + "\n")
    print(
        f"kept {len(result.documents)} of {len(docs)} documents; "
        f"{result.tokens_in} -> {result.tokens_out} tokens (rate {result.rate:.3f}) in {seconds:.1f} s"
    )
