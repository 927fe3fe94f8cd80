"""`ragline index` and `ragline search`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ragline.cli.app import app
from ragline.cli.output import print_json
from ragline.errors import UsageError
from ragline.progress import progress_bar

if TYPE_CHECKING:
    from ragline.pipeline.stage import Stage


@app.command("index")
def index_cmd(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Files (.txt, .md, .jsonl[.gz]) or directories (recursive)."),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="The index directory to write (or extend with --add)."),
    ],
    method: Annotated[
        list[str] | None, typer.Option("--method", "-m", help="bm25, dense or both (repeat).")
    ] = None,
    embedder: Annotated[
        str,
        typer.Option(help="Embedder for dense: a packaged name or a sentence-transformers model."),
    ] = "minilm-l6",
    faiss_index: Annotated[
        str, typer.Option("--faiss", help="Dense index: flat, hnsw or ivf.")
    ] = "flat",
    metric: Annotated[str, typer.Option(help="Dense metric: ip or l2.")] = "ip",
    chunk_tokens: Annotated[int, typer.Option(help="Words per chunk.")] = 180,
    chunk_overlap: Annotated[int, typer.Option(help="Words shared by consecutive chunks.")] = 30,
    no_chunking: Annotated[
        bool, typer.Option("--no-chunking", help="Keep every document whole.")
    ] = False,
    add: Annotated[
        bool, typer.Option("--add", help="Append to an existing index with its own settings.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing index.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Build a search index from documents, or add documents to one."""
    from ragline.retrievers.indexing import add_documents, build_index
    from ragline.retrievers.ingest import read_documents

    if add and overwrite:
        raise UsageError("--add and --overwrite exclude each other")
    docs = []
    with progress_bar("reading documents", total=None) as advance:
        for doc in read_documents(paths, exclude=[out]):
            docs.append(doc)
            advance(1)
    if add:
        if method:
            raise UsageError("--add uses the index's own methods and settings; drop --method")
        index = add_documents(out, docs)
    else:
        index = build_index(
            docs,
            out,
            methods=method or ["bm25"],
            overwrite=overwrite,
            dense={"embedder": embedder, "index": faiss_index, "metric": metric},
            chunking={
                "max_tokens": chunk_tokens,
                "overlap": chunk_overlap,
                "enabled": not no_chunking,
            },
        )
    summary = {
        "index": str(index.path),
        "documents": len(index.documents),
        "sources": index.manifest["sources"],
        "components": list(index.manifest["components"]),
    }
    if as_json:
        print_json(summary)
    else:
        print(
            f"indexed {summary['sources']} documents as {summary['documents']} chunks into {summary['index']} "
            f"({', '.join(summary['components'])})"
        )


def _scalar(text: str) -> Any:
    """`2020` -> 2020, `true` -> True, `a.md` -> "a.md": metadata keeps JSON types, so must filters."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if isinstance(value, str | int | float | bool) else text


def _parse_where(items: list[str]) -> dict[str, Any] | None:
    where: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--where {item!r}: expected KEY=VALUE")
        where.setdefault(key, []).append(_scalar(value))
    return {k: v[0] if len(v) == 1 else v for k, v in where.items()} or None


def make_retriever(
    index: Path, method: str, top_k: int, where: dict[str, Any] | None = None
) -> Stage:
    """The retriever stage for `--method` over `index` (auto: hybrid when the index has both kinds)."""
    from ragline.retrievers import BM25Retriever, DenseRetriever, HybridRetriever, open_index

    built = list(open_index(index).manifest["components"])
    if method == "auto":
        method = "hybrid" if len(built) > 1 else built[0]
    if method == "bm25":
        return BM25Retriever(index=str(index), top_k=top_k, where=where)
    if method == "dense":
        return DenseRetriever(index=str(index), top_k=top_k, where=where)
    if method == "hybrid":
        children = [{"type": f"retriever.{c}"} for c in built]
        return HybridRetriever(index=str(index), top_k=top_k, retrievers=children, where=where)
    raise UsageError(f"--method: expected auto, bm25, dense or hybrid, got {method!r}")


@app.command("search")
def search_cmd(
    question: Annotated[str | None, typer.Argument(help="The query (or use --questions).")] = None,
    index: Annotated[Path, typer.Option("--index", "-i", help="Index directory.")] = Path("."),
    method: Annotated[
        str, typer.Option("--method", "-m", help="auto, bm25, dense or hybrid.")
    ] = "auto",
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Passages to return.")] = 5,
    where: Annotated[
        list[str] | None, typer.Option("--where", help="Metadata filter KEY=VALUE (repeat).")
    ] = None,
    questions: Annotated[
        Path | None,
        typer.Option("--questions", "-q", help='JSONL of {"question": ...} to search in batch.'),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="With --questions: write JSONL here instead of stdout."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Rank passages of an index for a question, or for a file of questions."""
    from ragline.pipeline.pipeline import as_query
    from ragline.types import Query, RunState

    if (question is None) == (questions is None):
        raise UsageError("give a question or --questions FILE, not both")
    if out is not None and questions is None:
        raise UsageError("--out goes with --questions; a single search prints to stdout")
    # --where becomes the retriever's own filter, so a question line's `where` narrows it.
    retriever = make_retriever(index, method, top_k, _parse_where(where or []))
    if questions is None:
        assert question is not None
        query = as_query(Query(question))
        docs = retriever.run(RunState(query)).documents
        if as_json:
            print_json([{"rank": r, **d.to_dict()} for r, d in enumerate(docs, start=1)])
            return
        for r, d in enumerate(docs, start=1):
            print(f"{r:>2}. {d.score:8.4f}  {d.id}  {d.title}\n    {d.text[:200]}")
        return
    from ragline.pipeline.batch import read_questions

    queries = read_questions(questions)
    sink = open(out, "w", encoding="utf-8") if out is not None else sys.stdout
    try:
        with progress_bar("searching", total=len(queries)) as advance:
            for query in queries:
                docs = retriever.run(RunState(query)).documents
                line = {
                    "id": query.id,
                    "question": query.text,
                    "ids": [d.id for d in docs],
                    "scores": [d.score for d in docs],
                }
                sink.write(json.dumps(line, ensure_ascii=False) + "\n")
                advance(1)
    finally:
        if sink is not sys.stdout:
            sink.close()
