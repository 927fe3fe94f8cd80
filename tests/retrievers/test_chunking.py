"""Index-time chunking: sentence-aligned, overlapping chunks whose text points back into the source."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ragline.retrievers.chunking import ChunkSettings, chunk_document, chunk_documents
from ragline.types import Document

WORD = re.compile(r"\S+")


def words(text: str) -> int:
    """The number of whitespace-separated tokens in `text`."""
    return len(WORD.findall(text))


def check_chunks(doc: Document, chunks: list[Document], cfg: ChunkSettings) -> None:
    """Invariants of every chunking: bound, text identity, ids, increasing ranges, coverage."""
    assert chunks
    ranges = [(c.metadata["char_start"], c.metadata["char_end"]) for c in chunks]
    for i, (chunk, (start, end)) in enumerate(zip(chunks, ranges, strict=True)):
        assert chunk.id == f"{doc.id}#{i}"
        assert chunk.text == doc.text[start:end]
        assert words(chunk.text) <= cfg.max_tokens
        assert chunk.metadata["source_id"] == doc.id
        assert chunk.metadata["chunk"] == i
        assert chunk.score is None
    for (s0, e0), (s1, e1) in itertools.pairwise(ranges):
        assert s0 < s1 and e0 < e1
    for m in WORD.finditer(doc.text):
        assert any(s <= m.start() and m.end() <= e for s, e in ranges), m.group()


def sentence(n: int, k: int) -> str:
    """A sentence of `k` words tagged with its number `n`."""
    return " ".join([f"s{n}w{j}" for j in range(k - 1)] + [f"s{n}end."])


def test_short_document_keeps_its_id_and_gains_offsets() -> None:
    doc = Document("a", "  Short text. Two sentences!\n", {"title": "T"}, score=0.5)

    [out] = chunk_document(doc, ChunkSettings(max_tokens=8, overlap=2))

    assert (out.id, out.text, out.score) == ("a", doc.text, 0.5)
    assert dict(out.metadata) == {
        "title": "T",
        "source_id": "a",
        "chunk": 0,
        "char_start": 0,
        "char_end": len(doc.text),
    }


def test_exactly_max_tokens_is_not_split_and_empty_text_passes_through() -> None:
    cfg = ChunkSettings(max_tokens=8, overlap=2)
    assert [c.id for c in chunk_document(Document("x", "w " * 8), cfg)] == ["x"]
    assert [c.id for c in chunk_document(Document("x", "w " * 9), cfg)] == ["x#0", "x#1"]
    [empty] = chunk_document(Document("e", "   "), cfg)
    assert (empty.id, empty.metadata["char_end"]) == ("e", 3)


def test_disabled_chunking_returns_the_document_whole() -> None:
    doc = Document("big", " ".join(sentence(i, 10) for i in range(20)))

    [out] = chunk_document(doc, ChunkSettings(max_tokens=8, overlap=0, enabled=False))

    assert (out.id, out.text) == ("big", doc.text)
    assert out.metadata["char_end"] == len(doc.text)


def test_sentences_are_packed_whole_with_whole_sentence_overlap() -> None:
    text = " ".join(sentence(i, 4) for i in range(6))
    doc = Document("doc", text)

    chunks = chunk_document(doc, ChunkSettings(max_tokens=10, overlap=4))

    assert [c.text for c in chunks] == [f"{sentence(i, 4)} {sentence(i + 1, 4)}" for i in range(5)]
    check_chunks(doc, chunks, ChunkSettings(max_tokens=10, overlap=4))


def test_long_document_chunks_respect_sentences_and_overlap() -> None:
    sizes = [3, 7, 5, 2, 9, 4, 6, 1, 8, 5, 3, 7, 2, 6, 4, 5]
    parts = [sentence(i, k) for i, k in enumerate(sizes)]
    text = " ".join(parts)
    starts = [sum(len(p) + 1 for p in parts[:i]) for i in range(len(parts))]
    ends = {s + len(p) for s, p in zip(starts, parts, strict=True)}
    doc = Document("long", text, {"title": "Essay", "lang": "en"})
    cfg = ChunkSettings(max_tokens=16, overlap=6)

    chunks = chunk_document(doc, cfg)

    check_chunks(doc, chunks, cfg)
    assert len(chunks) > 3
    for c in chunks:
        assert c.metadata["char_start"] in starts
        assert c.metadata["char_end"] in ends
        assert (c.metadata["title"], c.metadata["lang"]) == ("Essay", "en")
    shared = 0
    for prev, nxt in itertools.pairwise(chunks):
        lo, hi = nxt.metadata["char_start"], prev.metadata["char_end"]
        if lo < hi:
            assert words(text[lo:hi]) <= cfg.overlap
            shared += 1
    assert shared > 0


def test_no_overlap_when_the_last_sentence_is_longer_than_overlap() -> None:
    doc = Document("d", " ".join(sentence(i, 5) for i in range(4)))

    chunks = chunk_document(doc, ChunkSettings(max_tokens=10, overlap=3))

    assert [c.text for c in chunks] == [
        f"{sentence(0, 5)} {sentence(1, 5)}",
        f"{sentence(2, 5)} {sentence(3, 5)}",
    ]


def test_giant_sentence_is_windowed_at_token_boundaries() -> None:
    tokens = [f"t{i}" for i in range(50)]
    doc = Document("g", " ".join(tokens))
    cfg = ChunkSettings(max_tokens=16, overlap=4)

    chunks = chunk_document(doc, cfg)

    assert [c.text.split() for c in chunks] == [
        tokens[0:16],
        tokens[12:28],
        tokens[24:40],
        tokens[36:50],
    ]
    check_chunks(doc, chunks, cfg)


def test_giant_sentence_between_short_ones_is_isolated() -> None:
    giant = " ".join(f"g{i}" for i in range(20)) + "."
    doc = Document("m", f"Alpha beta gamma. {giant} Delta epsilon zeta.")
    cfg = ChunkSettings(max_tokens=8, overlap=2)

    chunks = chunk_document(doc, cfg)

    assert chunks[0].text == "Alpha beta gamma."
    assert chunks[-1].text == "Delta epsilon zeta."
    assert all(c.text.startswith("g") for c in chunks[1:-1])
    check_chunks(doc, chunks, cfg)


def test_unicode_and_blank_lines_end_sentences() -> None:
    heading = "Grüße aus Köln"
    body = "Ünïcödé wörds — ✓ 東京 です"
    text = f"\n\n{heading}\n\n\n\n{body}\n\n  \n{heading} zwei\r\n\r\n{body}\n"
    doc = Document("u", text)
    cfg = ChunkSettings(max_tokens=14, overlap=4)

    chunks = chunk_document(doc, cfg)

    check_chunks(doc, chunks, cfg)
    assert [c.text for c in chunks] == [
        f"{heading}\n\n\n\n{body}\n\n  \n{heading} zwei",
        f"{heading} zwei\r\n\r\n{body}",
    ]


def test_abbreviations_do_not_end_sentences() -> None:
    text = "Ask Dr. Smith first. Then e.g. ask the rest of them."
    doc = Document("ab", text)

    chunks = chunk_document(doc, ChunkSettings(max_tokens=8, overlap=0))

    assert [c.text for c in chunks] == ["Ask Dr. Smith first.", "Then e.g. ask the rest of them."]


def test_chunk_documents_is_lazy_and_keeps_order() -> None:
    pulled: list[str] = []

    def source() -> Iterator[Document]:
        for i in range(3):
            pulled.append(str(i))
            yield Document(str(i), " ".join(sentence(j, 6) for j in range(3)))

    out = chunk_documents(source(), ChunkSettings(max_tokens=12, overlap=0))

    assert next(out).id == "0#0"
    assert pulled == ["0"]
    assert [d.id for d in out] == ["0#1", "1#0", "1#1", "2#0", "2#1"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_tokens": 16, "overlap": 16}, "overlap must be smaller than max_tokens"),
        ({"max_tokens": 16, "overlap": 40}, "overlap must be smaller than max_tokens"),
        ({"max_tokens": 7, "overlap": 0}, "max_tokens"),
        ({"overlap": -1}, "overlap"),
        ({"size": 100}, "size"),
    ],
)
def test_settings_validation(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        ChunkSettings(**kwargs)  # type: ignore[arg-type]


def test_settings_defaults_and_frozen() -> None:
    cfg = ChunkSettings()
    assert (cfg.max_tokens, cfg.overlap, cfg.enabled) == (180, 30, True)
    with pytest.raises(ValidationError):
        cfg.max_tokens = 10


@st.composite
def texts(draw: st.DrawFn) -> str:
    """Random words with sentence punctuation and varied whitespace."""
    word = st.text(alphabet="abcXYZéß東", min_size=1, max_size=6)
    punct = st.sampled_from(["", "", "", ".", "!", "?", ",", '."', "e.g."])
    space = st.sampled_from([" ", " ", "  ", "\n", "\n\n", " \n \n", "\t"])
    parts = draw(st.lists(st.tuples(word, punct, space), max_size=120))
    lead = draw(st.sampled_from(["", " ", "\n\n"]))
    return lead + "".join(w + p + s for w, p, s in parts)


@settings(max_examples=300, deadline=None)
@given(text=texts(), max_tokens=st.integers(8, 40), data=st.data())
def test_property_identity_coverage_and_bound(
    text: str, max_tokens: int, data: st.DataObject
) -> None:
    overlap = data.draw(st.integers(0, max_tokens - 1))
    cfg = ChunkSettings(max_tokens=max_tokens, overlap=overlap)
    doc = Document("p", text, {"k": 1})

    chunks = chunk_document(doc, cfg)

    if words(text) <= max_tokens:
        assert [c.id for c in chunks] == ["p"] and chunks[0].text == text
    else:
        check_chunks(doc, chunks, cfg)
        assert all(c.metadata["k"] == 1 for c in chunks)
