"""A tiny hand-written corpus of ten one-topic documents, and indexes of it built once per session.

Each document is about one everyday topic, so paraphrases with no shared word ("automobile" for
cars) have one right answer for an embedder, and BM25 finds only literal words. Two documents hide
a rare token (the name "Brandtmoor", the serial "QZ-48213") that only BM25 can rely on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ragline.retrievers.indexing import build_index
from ragline.types import Document

# id: (text, metadata); shelf is a string, year an int, reviewed a bool.
CORPUS: dict[str, tuple[str, dict[str, Any]]] = {
    "cars": (
        "Cars need petrol and regular oil changes to keep their engines running smoothly.",
        {"shelf": "home", "year": 2019, "reviewed": True},
    ),
    "dogs": (
        "Dogs are loyal pets that bark at strangers and love long walks in the park.",
        {"shelf": "home", "year": 2020, "reviewed": False},
    ),
    "pasta": (
        "Boil the spaghetti in salted water for ten minutes, then drain it.",
        {"shelf": "home", "year": 2021, "reviewed": True},
    ),
    "rain": (
        "Heavy rain and thunder are expected tomorrow afternoon across the valley.",
        {"shelf": "outdoors", "year": 2019, "reviewed": False},
    ),
    "doctor": (
        "The doctor examined the patient and prescribed antibiotics for the infection.",
        {"shelf": "office", "year": 2020, "reviewed": True},
    ),
    "bank": (
        "The bank raised interest rates on savings accounts and mortgages.",
        {"shelf": "office", "year": 2021, "reviewed": False},
    ),
    "space": (
        "Astronauts aboard the station orbit the Earth every ninety minutes.",
        {"shelf": "outdoors", "year": 2022, "reviewed": True},
    ),
    "football": (
        "The striker scored twice in the final and the fans cheered in the stadium.",
        {"shelf": "outdoors", "year": 2020, "reviewed": False},
    ),
    "piano": (
        "The pianist Ulvaeus Brandtmoor performed a Chopin nocturne at the concert hall.",
        {"shelf": "home", "year": 2022, "reviewed": False},
    ),
    "laptop": (
        "Laptops with more memory run software faster; the warranty card lists serial QZ-48213.",
        {"shelf": "office", "year": 2022, "reviewed": True},
    ),
}


def corpus_documents() -> list[Document]:
    """`CORPUS` as documents, in its order, with a title and the metadata."""
    return [Document(k, text, {"title": k.title(), **meta}) for k, (text, meta) in CORPUS.items()]


@pytest.fixture(scope="session")
def corpus() -> tuple[Document, ...]:
    """The ten documents of `CORPUS`."""
    return tuple(corpus_documents())


@pytest.fixture(scope="session")
def make_index(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """Build (once per argument set) an index of `CORPUS`: `make_index("bm25", "dense", index="ivf")`.

    Keyword arguments are dense settings. Indexes are shared: tests must not modify them.
    """
    built: dict[tuple[Any, ...], str] = {}

    def make(*methods: str, **dense: Any) -> str:
        key = (methods, tuple(sorted(dense.items())))
        if key not in built:
            out = tmp_path_factory.mktemp("corpus-index") / "idx"
            build_index(
                corpus_documents(), out, methods=list(methods), dense=dense or None, progress=False
            )
            built[key] = str(out)
        return built[key]

    return make


@pytest.fixture(scope="session")
def both_index(make_index: Callable[..., str]) -> str:
    """`CORPUS` with BM25 and a flat inner-product MiniLM component."""
    return make_index("bm25", "dense")


@pytest.fixture(scope="session")
def bm25_only_index(make_index: Callable[..., str]) -> str:
    """`CORPUS` with only a BM25 component."""
    return make_index("bm25")
