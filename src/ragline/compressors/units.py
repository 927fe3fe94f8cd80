"""Documents as tokens grouped into drop units (words or single tokens), and text reassembly."""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Literal

from ragline.errors import RaglineError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["TokenizedText", "assemble", "choose_units", "segments", "tokenize_units"]

Granularity = Literal["word", "token"]
_WORD = re.compile(r"\S+")
_DIGIT = re.compile(r"\d")


@dataclass(frozen=True)
class TokenizedText:
    """A text's tokens and the drop units they form.

    `unit_of[t]` is the unit of token t (non-decreasing); `spans[u]` is unit u's character span
    in `text`, without surrounding whitespace.
    """

    text: str
    ids: list[int]
    unit_of: list[int]
    spans: list[tuple[int, int]]

    @cached_property
    def unit_sizes(self) -> list[int]:
        """Tokens per unit."""
        sizes = [0] * len(self.spans)
        for u in self.unit_of:
            sizes[u] += 1
        return sizes

    @cached_property
    def has_digit(self) -> list[bool]:
        """Whether each unit's text contains a digit."""
        return [bool(_DIGIT.search(self.text[a:b])) for a, b in self.spans]


def tokenize_units(
    tokenizer: PreTrainedTokenizerBase, text: str, granularity: Granularity = "word"
) -> TokenizedText:
    """Tokenize `text` and group its tokens into words (maximal non-space runs) or single tokens."""
    if not getattr(tokenizer, "is_fast", False):
        raise RaglineError(
            f"compressor: tokenizer {type(tokenizer).__name__} gives no character offsets; "
            "expected a fast (Rust) tokenizer"
        )
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if not words:  # nothing but whitespace: nothing to keep
        return TokenizedText(text, [], [], [])
    starts = [a for a, _ in words]
    # A token's word is the one holding its first non-space character; an all-space token joins
    # the word before it (its character span is empty after stripping).
    word_of: list[int] = []
    for a, b in offsets:
        seg = text[a:b]
        lead = len(seg) - len(seg.lstrip())
        if lead == len(seg):
            word_of.append(word_of[-1] if word_of else 0)
        else:
            word_of.append(max(0, bisect.bisect_right(starts, a + lead) - 1))
    if granularity == "word":
        used = sorted(set(word_of))
        renumber = {w: u for u, w in enumerate(used)}
        return TokenizedText(text, ids, [renumber[w] for w in word_of], [words[w] for w in used])
    spans = []
    for a, b in offsets:
        seg = text[a:b]
        lead, trail = len(seg) - len(seg.lstrip()), len(seg) - len(seg.rstrip())
        spans.append((a + lead, max(a + lead, b - trail)))
    return TokenizedText(text, ids, list(range(len(ids))), spans)


def segments(doc: TokenizedText, size: int) -> list[tuple[int, int]]:
    """Split a document's tokens into `(start, end)` runs of about `size` tokens on unit borders."""
    out: list[tuple[int, int]] = []
    start = 0
    n = len(doc.ids)
    while start < n:
        end = min(n, start + size)
        # Move the cut back to the start of the unit it falls in, unless that empties the run.
        while end < n and end > start + 1 and doc.unit_of[end] == doc.unit_of[end - 1]:
            end -= 1
        if end == start + 1 and size > 1 and end < n:
            end = min(n, start + size)
        out.append((start, end))
        start = end
    return out


def choose_units(
    scores: Sequence[float], sizes: Sequence[int], ratio: float, forced: Sequence[bool]
) -> list[bool]:
    """Keep the highest-scoring units until `ratio` of the tokens are kept; `forced` are kept first.

    This is the segment threshold of token-level compression: the score of the last unit kept.
    """
    total = sum(sizes)
    budget = round(ratio * total)
    keep = [bool(f) for f in forced]
    used = sum(s for s, k in zip(sizes, keep, strict=True) if k)
    for u in sorted(range(len(scores)), key=lambda u: -scores[u]):
        if used >= budget:
            break
        if keep[u]:
            continue
        # Take a unit that overshoots only when that lands closer to the budget than stopping.
        if used + sizes[u] - budget > budget - used:
            continue
        keep[u] = True
        used += sizes[u]
    return keep


def assemble(doc: TokenizedText, keep_units: Sequence[bool]) -> str:
    """Join the kept units' text; a dropped stretch or a space becomes one space, a line break stays."""
    parts: list[str] = []
    prev_end: int | None = None
    for (a, b), k in zip(doc.spans, keep_units, strict=True):
        if not k or a == b:
            continue
        if prev_end is not None:
            gap = doc.text[prev_end:a]
            if gap:
                parts.append("\n" if "\n" in gap else " ")
        parts.append(doc.text[a:b])
        prev_end = b
    return "".join(parts)
