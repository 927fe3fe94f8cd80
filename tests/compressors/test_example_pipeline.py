"""The shipped compression pipeline loads, validates and runs (tiny LM in place of SmolLM2)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO

from ragline import Pipeline


def test_compressed_example_pipeline_runs(example_index: Path, tiny_lm_dir: Path) -> None:
    pipe = Pipeline.from_yaml(
        REPO / "examples" / "pipelines" / "compressed.yaml",
        overrides={
            "retriever.": {"index": str(example_index)},
            "compressor.": {"model": str(tiny_lm_dir)},
            "generator.": {"model": str(tiny_lm_dir), "max_new_tokens": 4},
        },
    )
    state = pipe.run_state("How tall is the Brassmoor Lighthouse?")
    stages = [t.stage for t in state.trace]
    assert stages[:2] == ["retriever.bm25", "compressor.longllmlingua"]
    comp = state.trace[1]
    assert comp.tokens_in and comp.tokens_out and comp.tokens_out < comp.tokens_in
    assert 0.4 <= comp.details["rate"] <= 0.6
    assert state.answer is not None and state.answer.sources
