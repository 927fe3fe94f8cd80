"""Find which numbered sources an answer cites: explicit `[n]` markers, else word overlap."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragline.types import Document

__all__ = ["attribute_citations"]

_MARKER = re.compile(r"\[(\d{1,3})(?:\s*,\s*(\d{1,3}))*\]")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the their this to was were which who with".split()
)


# Words small models wrap answers in ("The answer to this question is: ...").
_FILLER = frozenset("answer answers question document documents according mentioned".split())


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def attribute_citations(
    answer: str, sources: Sequence[Document], question: str = "", *, min_overlap: float = 0.5
) -> tuple[list[int], str]:
    """Return the cited source numbers (1-based, in order of appearance) and how they were found.

    Markers `[n]` (or `[n, m]`) that name an existing source win ("marker"). Without markers,
    the answer's content words that the question does not already contain (what the answer
    adds) are matched against each source; the source holding the largest fraction of them is
    cited if that fraction is at least `min_overlap` ("overlap"), ties going to the earlier,
    better ranked source. A source must contain every number the answer adds ("500 metres" is
    not supported by "38 metres"), and an answer that adds nothing to the question cites
    nothing ("none").
    """
    numbers: list[int] = []
    for m in _MARKER.finditer(answer):
        for n in map(int, re.findall(r"\d+", m.group(0))):
            if 1 <= n <= len(sources) and n not in numbers:
                numbers.append(n)
    if numbers:
        return numbers, "marker"
    words = _content_words(_MARKER.sub(" ", answer)) - _FILLER - _content_words(question)
    if not words or not sources:
        return [], "none"
    digits = {w for w in words if w.isdigit()}
    best, best_score = 0, 0.0
    for n, doc in enumerate(sources, start=1):
        support = _content_words(f"{doc.title} {doc.text}")
        if not digits <= support:
            continue
        score = len(words & support) / len(words)
        if score > best_score:
            best, best_score = n, score
    return ([best], "overlap") if best_score >= min_overlap else ([], "none")
