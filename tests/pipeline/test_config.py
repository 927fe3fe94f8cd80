"""Pipelines from YAML: validated stage configs, located errors, registry, and round trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ragline import Pipeline, RunState, register_stage
from ragline.compressors import LLMLinguaCompressor, LongLLMLinguaCompressor
from ragline.errors import ConfigError
from ragline.generators.hf import HFGenerator
from ragline.generators.openai import OpenAIGenerator
from ragline.generators.prompt import NumberedPrompt
from ragline.registry import UnknownStageType, load_stage_class, stage_types
from ragline.reorder.sort import SortReorderer
from ragline.retrievers.bm25 import BM25Retriever
from ragline.types import Document, Query


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_stage_type_suggests_close_match(tmp_path: Path) -> None:
    path = write(tmp_path, "stages:\n  - type: retriever.bm52\n    index: x\n")
    with pytest.raises(ConfigError) as err:
        Pipeline.from_yaml(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:2: stages[0].type: unknown stage type 'retriever.bm52'")
    assert "did you mean 'retriever.bm25'" in msg


def test_wrong_parameter_type_names_path_line_value_and_expectation(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "stages:\n  - type: reorder.sort\n  - type: retriever.bm25\n    index: x\n    top_k: five\n",
    )
    with pytest.raises(ConfigError) as err:
        Pipeline.from_yaml(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:5: stages[1].top_k: ")
    assert "integer" in msg and "'five'" in msg


def test_out_of_range_value(tmp_path: Path) -> None:
    path = write(tmp_path, "stages:\n  - type: retriever.bm25\n    index: x\n    top_k: 0\n")
    with pytest.raises(
        ConfigError,
        match=r":4: stages\[0\]\.top_k: input should be greater than or equal to 1, got 0",
    ):
        Pipeline.from_yaml(path)


def test_unknown_key_suggests_field(tmp_path: Path) -> None:
    path = write(tmp_path, "stages:\n  - type: retriever.bm25\n    index: x\n    topk: 3\n")
    with pytest.raises(
        ConfigError,
        match=r":4: stages\[0\]\.topk: unknown key for retriever\.bm25; did you mean 'top_k'\?",
    ):
        Pipeline.from_yaml(path)


def test_missing_required_key(tmp_path: Path) -> None:
    path = write(tmp_path, "stages:\n  - type: retriever.bm25\n    top_k: 3\n")
    with pytest.raises(ConfigError, match=r":2: stages\[0\]\.index: required key is missing"):
        Pipeline.from_yaml(path)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("stages: []\n", r"stages: expected a non-empty list"),
        ("- a\n- b\n", r"expected a mapping with a 'stages' list"),
        ("stages:\n  - reorder.sort\n", r"stages\[0\]: expected a mapping with a 'type' key"),
        ("stages:\n  - top_k: 3\n", r"stages\[0\]\.type: expected a stage type name"),
        (
            "stage:\n  - type: reorder.sort\n",
            r"stage: unknown key; expected one of name, description, stages",
        ),
    ],
)
def test_structural_errors(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        Pipeline.from_yaml(write(tmp_path, text))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pipeline file not found"):
        Pipeline.from_yaml(tmp_path / "nope.yaml")


def test_import_paths_need_allow_imports(tmp_path: Path) -> None:
    path = write(tmp_path, "stages:\n  - type: ragline.reorder.sort:SortReorderer\n")
    with pytest.raises(ConfigError, match="only allowed with allow_imports=True"):
        Pipeline.from_yaml(path)
    assert isinstance(Pipeline.from_yaml(path, allow_imports=True).stages[0], SortReorderer)


def test_overrides_replace_retriever_index_before_interpolation(tmp_path: Path) -> None:
    path = write(tmp_path, "stages:\n  - type: retriever.bm25\n    index: ${UNSET_VARIABLE}\n")
    pipe = Pipeline.from_yaml(path, overrides={"retriever.": {"index": "given"}}, env={})
    assert pipe.stages[0].config.index == "given"  # type: ignore[attr-defined]


class Shout:
    """A third-party stage with its own from_config and to_config."""

    name = "shout"

    def __init__(self, suffix: str = "!") -> None:
        self.suffix = suffix

    @classmethod
    def from_config(cls, params: dict[str, Any]) -> Shout:
        return cls(**params)

    def to_config(self) -> dict[str, Any]:
        return {"type": "test.shout", "suffix": self.suffix}

    def run(self, state: RunState) -> RunState:
        return state.evolve(documents=(Document("x", state.query.text.upper() + self.suffix),))


def test_registered_third_party_stage_round_trips(tmp_path: Path) -> None:
    register_stage("test.shout")(Shout)
    assert "test.shout" in stage_types()
    pipe = Pipeline.from_yaml(write(tmp_path, "stages:\n  - type: test.shout\n    suffix: '?!'\n"))
    again = Pipeline.from_config(pipe.to_config())
    assert (
        again.run_state("hi").documents[0].text == pipe.run_state("hi").documents[0].text == "HI?!"
    )


def test_entry_point_stages_are_found(monkeypatch: pytest.MonkeyPatch) -> None:
    class EP:
        name = "plugin.shout"

        def load(self) -> type:
            return Shout

    monkeypatch.setattr(
        "ragline.registry.entry_points", lambda group: [EP()] if group == "ragline.stages" else []
    )
    assert load_stage_class("plugin.shout") is Shout
    assert "plugin.shout" in stage_types()
    with pytest.raises(UnknownStageType, match=r"did you mean 'plugin\.shout'"):
        load_stage_class("plugin.shuot")


STAGE_CASES = [
    (BM25Retriever, {"index": "some/dir", "top_k": 7, "verify": False}),
    (SortReorderer, {"descending": False, "name": "worst-first"}),
    (
        NumberedPrompt,
        {"instruction": "Be brief.", "document_template": "({number}) {text}", "max_documents": 2},
    ),
    (
        HFGenerator,
        {"model": "some/model", "max_new_tokens": 9, "temperature": 0.7, "stop": ["\n"], "seed": 3},
    ),
    (
        OpenAIGenerator,
        {
            "model": "smollm2",
            "base_url": "http://127.0.0.1:8080/v1",
            "api_key_env": "MY_KEY",
            "stream": False,
            "max_retries": 1,
            "timeout": 5.0,
            "stop": ["\n"],
        },
    ),
    (
        LongLLMLinguaCompressor,
        {"model": "some/model", "rate": 0.3, "context_budget": "*1.5", "force_keep": ["a"]},
    ),
    (LLMLinguaCompressor, {"target_tokens": 300, "reorder": "sort", "granularity": "token"}),
]


@pytest.mark.parametrize(("cls", "params"), STAGE_CASES, ids=lambda c: getattr(c, "type_name", ""))
def test_every_builtin_stage_round_trips(cls: type, params: dict[str, Any]) -> None:
    stage = cls(**params)
    config = stage.to_config()
    assert config == {"type": cls.type_name, **params}
    again = Pipeline.from_config({"stages": [config]}).stages[0]
    assert type(again) is cls and again.config == stage.config  # type: ignore[attr-defined]


def test_yaml_round_trip_of_a_full_pipeline_behaves_the_same(
    tmp_path: Path, example_index: Path, tiny_lm_dir: Path
) -> None:
    text = f"""\
name: full
description: every built-in stage
stages:
  - type: retriever.bm25
    index: {example_index}
    top_k: 3
  - type: compressor.longllmlingua
    model: {tiny_lm_dir}
    rate: 0.6
  - type: reorder.sort
    descending: false
  - type: prompt.numbered
    max_documents: 2
  - type: generator.hf
    model: {tiny_lm_dir}
    max_new_tokens: 8
"""
    first = Pipeline.from_yaml(write(tmp_path, text))
    saved = tmp_path / "saved.yaml"
    first.to_yaml(saved)
    second = Pipeline.from_yaml(saved)
    assert second.to_config() == first.to_config()
    a, b = (
        first.run("Who designed the Brassmoor Lighthouse?"),
        second.run("Who designed the Brassmoor Lighthouse?"),
    )
    assert a.text == b.text and [s.document.id for s in a.sources] == [
        s.document.id for s in b.sources
    ]
    assert len(a.sources) == 2
    # sorted ascending: the best BM25 document is last
    scores = [s.document.score for s in a.sources]
    assert scores == sorted(scores)  # type: ignore[type-var]


def test_prompt_template_fields_are_validated() -> None:
    with pytest.raises(
        ConfigError, match=r"document_template: .*unknown template fields \['score'\]"
    ):
        NumberedPrompt(document_template="{score}: {text}")


def test_stage_rejects_config_and_kwargs_together() -> None:
    with pytest.raises(TypeError, match="not both"):
        SortReorderer(SortReorderer.Config(), descending=False)


def test_sort_keeps_unscored_last() -> None:
    docs = (Document("a", "x"), Document("b", "y", score=1.0), Document("c", "z", score=2.0))
    out = SortReorderer().run(RunState(Query("q"), documents=docs)).documents
    assert [d.id for d in out] == ["c", "b", "a"]
