"""Edge cases of YAML and pipelines: aliases, duplicates, escaping, empty pipelines, timing keys."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ragline import Answer, Pipeline, RunState, StageTrace
from ragline.errors import ConfigError, UsageError
from ragline.generators.hf import HFGenerator
from ragline.pipeline.yamlio import load_yaml
from ragline.reorder.sort import SortReorderer
from ragline.retrievers.bm25 import BM25Retriever


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than"):
        load_yaml("\n".join(lines) + "\n", "bomb.yaml")
    assert time.perf_counter() - started < 2.0


def test_deep_nesting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"nested too deeply|expands to more than"):
        load_yaml("x: " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml")


def test_duplicate_keys_are_errors_not_silent_overwrites() -> None:
    with pytest.raises(ConfigError, match=r"^d\.yaml:4: stages\[0\]\.descending: duplicate key$"):
        load_yaml(
            "stages:\n  - type: reorder.sort\n    descending: true\n    descending: false\n",
            "d.yaml",
        )


def test_to_yaml_escapes_dollar_braces(tmp_path: Path) -> None:
    pipe = Pipeline([HFGenerator(model="m", stop=["${HOME}"])])
    path = tmp_path / "p.yaml"
    pipe.to_yaml(path)
    again = Pipeline.from_yaml(path, env={"HOME": "/root"})
    assert again.stages[0].config.stop == ["${HOME}"]  # type: ignore[attr-defined]


def test_from_config_does_not_interpolate() -> None:
    pipe = Pipeline.from_config({"stages": [{"type": "generator.hf", "model": "${NOT_SET}"}]})
    assert pipe.stages[0].config.model == "${NOT_SET}"  # type: ignore[attr-defined]


def test_empty_pipeline_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one stage"):
        Pipeline([])


def test_bad_question_is_rejected_before_models_load() -> None:
    class Heavy:
        name = "heavy"

        def warm_up(self) -> None:
            raise AssertionError("warm_up must not run for an empty question")

        def run(self, state: RunState) -> RunState:
            return state

    pipe = Pipeline([Heavy()])
    for call in (pipe.run_state, lambda q: list(pipe.stream(q))):
        with pytest.raises(UsageError, match="non-empty question"):
            call("")


def test_pipeline_without_generator_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no generator"):
        Pipeline([SortReorderer()]).run("q")


def test_repeated_stage_names_keep_separate_timings() -> None:
    trace = (StageTrace("reorder.sort", 0.1), StageTrace("reorder.sort", 0.2), StageTrace("x", 0.3))
    answer = Answer(text="", question="q", trace=trace)
    assert answer.timings == {"reorder.sort": 0.1, "reorder.sort#2": 0.2, "x": 0.3}


def test_python_constructed_stage_suggests_the_right_key() -> None:
    with pytest.raises(ConfigError, match=r"topk: unknown key; did you mean 'top_k'\?"):
        BM25Retriever(index="x", topk=3)


@pytest.mark.parametrize("template", ["{number:s} {text}", "{text:{foo}}", "{text!z}"])
def test_template_format_specs_are_validated_up_front(template: str) -> None:
    from ragline.generators.prompt import NumberedPrompt

    with pytest.raises(ConfigError, match="document_template"):
        NumberedPrompt(document_template=template)


@pytest.mark.parametrize("device", ["banana", "cuda:x", "gpu"])
def test_generator_device_is_validated(device: str) -> None:
    with pytest.raises(ConfigError, match="device"):
        HFGenerator(device=device)
