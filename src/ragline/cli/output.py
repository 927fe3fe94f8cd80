"""How the CLI writes answers: plain text for people, JSON for programs (stdout only)."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from ragline.types import Answer

__all__ = ["print_json", "print_sources"]


def print_sources(answer: Answer, out: TextIO = sys.stdout) -> None:
    """The numbered sources after an answer; cited ones marked with `*`."""
    if not answer.sources:
        out.write("\nSources: none (the retriever found no matching documents)\n")
        return
    out.write("\nSources:\n")
    for s in answer.sources:
        mark = "*" if s.cited else " "
        title = s.document.title or s.document.id
        out.write(f"  [{s.number}]{mark} {title} ({s.document.id})\n")
    if answer.citations:
        how = (
            "cited with [n] markers"
            if answer.citation_method == "marker"
            else "attributed by word overlap"
        )
        out.write(f"  * {how}\n")
    out.flush()


def print_json(data: Any, out: TextIO = sys.stdout) -> None:
    """One JSON document on its own line."""
    out.write(json.dumps(data, ensure_ascii=False) + "\n")
    out.flush()
