"""Incremental detokenisation for streaming, with stop strings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["StreamingDetokenizer"]


class StreamingDetokenizer:
    """Turn generated token ids into text chunks as they arrive.

    A chunk is released only when it is final: a multi-byte character split across tokens
    decodes to U+FFFD until complete, and text that could still grow into a stop string is
    held back. Once a stop string appears, the text before it is the answer.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.tokens: list[int] = []
        self.text = ""  # what has been released so far
        self.stopped = False
        self._hold = max((len(s) - 1 for s in self.stop), default=0)

    def _decoded(self) -> str:
        return str(self.tokenizer.decode(self.tokens, skip_special_tokens=True))

    def push(self, token: int) -> str:
        """Add one token; return the newly final text (possibly empty). Sets `stopped` on a stop string."""
        self.tokens.append(token)
        full = self._decoded()
        cuts = [i for i in (full.find(s) for s in self.stop) if i >= 0]
        if cuts:
            self.stopped = True
            return self._release(full[: min(cuts)])
        if full.endswith("\ufffd"):
            return ""
        return self._release(full[: len(full) - self._hold])

    def finish(self) -> str:
        """Release whatever is held back once generation has ended."""
        return "" if self.stopped else self._release(self._decoded())

    def _release(self, upto: str) -> str:
        if len(upto) <= len(self.text):
            return ""
        chunk = upto[len(self.text) :]
        self.text = upto
        return chunk
