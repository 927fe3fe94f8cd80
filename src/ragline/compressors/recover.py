"""Subsequence recovery: restore words a compressor dropped inside spans an answer copied."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence

__all__ = ["recover", "recover_all"]

_WORD = re.compile(r"\S+")
_PUNCT = string.punctuation + "\u201c\u201d\u2018\u2019\u00ab\u00bb"  # curly quotes, guillemets


def _key(word: str) -> str:
    return word.strip(_PUNCT).lower()


def _align(compressed: Sequence[str], original: Sequence[str]) -> list[int | None]:
    """Original word index of each compressed word, matching in order (compressed ⊆ original)."""
    out: list[int | None] = []
    j = 0
    for w in compressed:
        k = j
        while k < len(original) and original[k] != w:
            k += 1
        if k < len(original):
            out.append(k)
            j = k + 1
        else:
            out.append(None)  # not from this original: leave it unmapped, keep aligning
    return out


def recover(answer: str, original: str, compressed: str, *, max_gap: int = 8) -> str:
    """Rewrite runs of two or more answer words copied from `compressed` with the original words.

    A compressor drops words, so an answer that quotes compressed text can quote it with holes
    ("born 1879 Ulm" for "born on 14 March 1879 in Ulm"). Each maximal run of answer words that
    appears contiguously in `compressed` is replaced by the original stretch it came from, when
    that stretch dropped at most `max_gap` words. Words are compared without case and surrounding
    punctuation; text outside such runs is left as it is.

    Example:
        >>> recover("He was born 1879 Ulm.", "He was born on 14 March 1879 in Ulm.",
        ...         "He born 1879 Ulm.")
        'He was born on 14 March 1879 in Ulm.'
    """
    o_spans = [(m.start(), m.end()) for m in _WORD.finditer(original)]
    c_words = _WORD.findall(compressed)
    a_spans = [(m.start(), m.end()) for m in _WORD.finditer(answer)]
    if len(c_words) < 2 or len(a_spans) < 2:
        return answer
    o_words = [original[a:b] for a, b in o_spans]
    to_orig = _align(c_words, o_words)
    c_keys = [_key(w) for w in c_words]
    a_keys = [_key(answer[a:b]) for a, b in a_spans]
    where: dict[str, list[int]] = {}
    for j, key in enumerate(c_keys):
        where.setdefault(key, []).append(j)

    pieces: list[str] = []
    cursor = 0
    i = 0
    while i < len(a_spans):
        best_len, best_j = 0, -1
        for j in where.get(a_keys[i], ()):
            n = 0
            while i + n < len(a_keys) and j + n < len(c_keys) and a_keys[i + n] == c_keys[j + n]:
                n += 1
            if n > best_len:
                best_len, best_j = n, j
        if best_len >= 2 and a_keys[i]:
            mapped = to_orig[best_j : best_j + best_len]
            if all(m is not None for m in mapped):
                pos = [m for m in mapped if m is not None]
                dropped = (pos[-1] - pos[0] + 1) - best_len
                if 0 < dropped <= max_gap:
                    # The answer's own words stay as written; the dropped original words go back
                    # between them.
                    words = [answer[a:b] for a, b in a_spans[i : i + best_len]]
                    out = [words[0]]
                    for k in range(1, best_len):
                        out.extend(o_words[pos[k - 1] + 1 : pos[k]])
                        out.append(words[k])
                    start, end = a_spans[i][0], a_spans[i + best_len - 1][1]
                    pieces.append(answer[cursor:start] + " ".join(out))
                    cursor = end
            i += best_len
        else:
            i += 1
    pieces.append(answer[cursor:])
    return "".join(pieces)


def recover_all(answer: str, originals: Mapping[str, str], compressed: Mapping[str, str]) -> str:
    """Apply `recover` for every compressed document whose original text is known."""
    for doc_id, text in compressed.items():
        if doc_id in originals and originals[doc_id] != text:
            answer = recover(answer, originals[doc_id], text)
    return answer
