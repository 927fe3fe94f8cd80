"""Citation attribution: explicit markers first, then what the answer adds over the question."""

from __future__ import annotations

from ragline.generators.citations import attribute_citations
from ragline.types import Document

SOURCES = [
    Document(
        "light",
        "The Brassmoor Lighthouse was first lit in 1871 and designed by Tobias Grell.",
        {"title": "Lighthouse"},
    ),
    Document(
        "grell",
        "Tobias Grell was an engineer born in Emberport in 1829.",
        {"title": "Tobias Grell"},
    ),
    Document(
        "wine",
        "Tarnberry wine is dark violet and about 11 percent alcohol.",
        {"title": "Tarnberry Wine"},
    ),
]


def test_markers_win_in_order_and_out_of_range_ignored() -> None:
    assert attribute_citations("Violet [3], see also [1, 3] and [9].", SOURCES) == (
        [3, 1],
        "marker",
    )


def test_overlap_attributes_the_answer_bearing_source() -> None:
    numbers, method = attribute_citations(
        "It is dark violet.", SOURCES, "What colour is tarnberry wine?"
    )
    assert (numbers, method) == ([3], "overlap")


def test_question_words_do_not_count_as_support() -> None:
    # "Brassmoor Lighthouse" comes from the question; "1829" is what the answer adds.
    numbers, _ = attribute_citations(
        "The Brassmoor Lighthouse engineer was born in 1829.",
        SOURCES,
        "When was the Brassmoor Lighthouse engineer born?",
    )
    assert numbers == [2]


def test_unsupported_answer_cites_nothing() -> None:
    assert attribute_citations("Purple elephants dance.", SOURCES, "What?") == ([], "none")
    assert attribute_citations("", SOURCES) == ([], "none")
    assert attribute_citations("Anything at all", []) == ([], "none")


def test_ties_go_to_the_better_ranked_source() -> None:
    numbers, _ = attribute_citations("Tobias Grell", SOURCES, "Who?")
    assert numbers == [1]


def test_an_answer_that_adds_nothing_to_the_question_cites_nothing() -> None:
    assert attribute_citations(
        "The lighthouse is tall.", SOURCES, "How tall is the lighthouse?"
    ) == ([], "none")


def test_a_source_must_contain_the_numbers_the_answer_gives() -> None:
    question = "When was the Brassmoor Lighthouse first lit?"
    assert attribute_citations("It was first lit in 1871.", SOURCES, question) == ([1], "overlap")
    assert attribute_citations("It was first lit in 1902.", SOURCES, question) == ([], "none")
