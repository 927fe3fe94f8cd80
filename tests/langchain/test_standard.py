"""LangChain's own standard integration tests (`langchain-tests`) for RaglineRetriever."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "langchain_tests",
    reason="langchain-tests is not installed (pip install -e '.[dev]' installs it)",
)
from langchain_tests.integration_tests import RetrieversIntegrationTests

from ragline.langchain import RaglineRetriever
from ragline.retrievers.bm25 import BM25Retriever


class TestRaglineRetrieverStandard(RetrieversIntegrationTests):
    """BM25 over the example corpus, returning up to ten documents before `k` caps them."""

    @pytest.fixture(autouse=True)
    def _index(self, example_index: Path) -> None:
        self._stage = BM25Retriever(index=str(example_index), top_k=10)

    @property
    def retriever_constructor(self) -> type[RaglineRetriever]:
        return RaglineRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"stage": self._stage}

    @property
    def retriever_query_example(self) -> str:
        return "Who designed the Brassmoor Lighthouse?"
