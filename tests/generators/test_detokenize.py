"""Streaming detokenisation releases only final text and honours stop strings."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ragline.generators.detokenize import StreamingDetokenizer


class ByteTokenizer:
    """Each token is one UTF-8 byte, so multi-byte characters span several tokens."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def feed(text: str, stop: tuple[str, ...] = ()) -> tuple[list[str], StreamingDetokenizer]:
    detok = StreamingDetokenizer(ByteTokenizer(), stop)
    chunks = []
    for b in text.encode("utf-8"):
        chunks.append(detok.push(b))
        if detok.stopped:
            break
    chunks.append(detok.finish())
    return [c for c in chunks if c], detok


def test_chunks_concatenate_to_the_text() -> None:
    chunks, detok = feed("Grüße, 1871 ✓")
    assert "".join(chunks) == "Grüße, 1871 ✓" == detok.text
    assert all("\ufffd" not in c for c in chunks)


def test_stop_string_cuts_and_stops() -> None:
    chunks, detok = feed("first line\n\nsecond", stop=("\n\n",))
    assert "".join(chunks) == "first line" == detok.text
    assert detok.stopped


def test_partial_stop_string_is_held_back_then_released() -> None:
    chunks, detok = feed("a\nb", stop=("\n\n",))
    assert "".join(chunks) == "a\nb" and not detok.stopped
    # "a\n" could have become "a\n\n": the newline is not released until "b" arrives.
    assert chunks[0] == "a"


def _expected(text: str, stop: list[str]) -> str:
    """Generation halts at the first prefix containing a stop string; the answer ends before it."""
    data = text.encode("utf-8")
    for n in range(1, len(data) + 1):
        prefix = data[:n].decode("utf-8", errors="replace")
        cuts = [i for i in (prefix.find(s) for s in stop) if i >= 0]
        if cuts:
            return prefix[: min(cuts)]
    return text


@given(text=st.text(max_size=40), stop=st.lists(st.text(min_size=1, max_size=3), max_size=2))
def test_chunks_always_equal_the_text_before_the_first_stop(text: str, stop: list[str]) -> None:
    chunks, detok = feed(text, tuple(stop))
    assert "".join(chunks) == detok.text == _expected(text, stop)


def test_a_shorter_stop_completing_first_wins() -> None:
    chunks, _ = feed("xyz", ("xyz", "y"))
    assert "".join(chunks) == "x"
