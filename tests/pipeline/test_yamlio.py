"""YAML loading keeps line numbers for every path and interpolates environment variables safely."""

from __future__ import annotations

import pytest

from ragline.errors import ConfigError
from ragline.pipeline.yamlio import format_path, interpolate_env, load_yaml

DOC = """\
name: demo
stages:
  - type: retriever.bm25
    index: ./idx
    top_k: 4
  - type: generator.hf
    model: ${MODEL:-smollm2-135m-instruct}
"""


def test_lines_of_nested_paths() -> None:
    doc = load_yaml(DOC, "p.yaml")
    assert doc.line_of(("stages", 0, "top_k")) == 5
    assert doc.line_of(("stages", 1, "model")) == 7
    # A key that is absent points at the closest enclosing mapping.
    assert doc.line_of(("stages", 1, "missing")) == 6


def test_format_path() -> None:
    assert format_path(("stages", 2, "target_tokens")) == "stages[2].target_tokens"
    assert format_path(()) == "<root>"


def test_malformed_yaml_names_file_and_line() -> None:
    with pytest.raises(ConfigError, match=r"^bad\.yaml:3: malformed YAML"):
        load_yaml("stages:\n  - type: a\n   bad: [\n", "bad.yaml")


def test_tags_that_build_objects_are_refused() -> None:
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_yaml("x: !!python/object/apply:os.system ['true']\n", "evil.yaml")


def test_env_interpolation_default_and_value() -> None:
    doc = load_yaml(DOC, "p.yaml")
    assert interpolate_env(doc, {})["stages"][1]["model"] == "smollm2-135m-instruct"
    assert interpolate_env(doc, {"MODEL": "other"})["stages"][1]["model"] == "other"


def test_missing_env_variable_names_path_and_line() -> None:
    doc = load_yaml("stages:\n  - type: x\n    index: ${NOPE}\n", "p.yaml")
    with pytest.raises(
        ConfigError, match=r"p\.yaml:3: stages\[0\]\.index: environment variable 'NOPE' is not set"
    ):
        interpolate_env(doc, {})


def test_escaped_dollar_stays_literal() -> None:
    doc = load_yaml("a: $${HOME}/x\n", "p.yaml")
    assert interpolate_env(doc, {"HOME": "/root"}) == {"a": "${HOME}/x"}
