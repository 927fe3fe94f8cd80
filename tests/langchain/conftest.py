"""Pipelines for the LangChain adapter tests: BM25 over the example corpus and the tiny random LM."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("langchain_core")

from ragline import Pipeline
from ragline.generators import HFGenerator, NumberedPrompt
from ragline.retrievers.bm25 import BM25Retriever


@pytest.fixture(scope="module")
def tiny_pipeline(example_index: Path, tiny_lm_dir: Path) -> Pipeline:
    """Retrieve three documents, number them, generate eight tokens with the tiny LM."""
    pipe = Pipeline(
        [
            BM25Retriever(index=str(example_index), top_k=3),
            NumberedPrompt(),
            HFGenerator(model=str(tiny_lm_dir), max_new_tokens=8),
        ],
        name="tiny",
    )
    pipe.warm_up()
    return pipe
