"""Pattern configs: valid files load, malformed ones fail clearly; the `prefill:` option round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragline.attention.config import (
    DEFAULT_PATTERN,
    AShape,
    SparsePrefillConfig,
    VerticalSlash,
    load_pattern_config,
    uniform_config,
)
from ragline.attention.prefill import PrefillConfig, resolve_patterns
from ragline.errors import ConfigError


def test_round_trip(tmp_path: Path) -> None:
    cfg = SparsePrefillConfig(
        model="m", layers=[[AShape(), VerticalSlash(vertical=10, slash=20, recall=0.97)]]
    )
    cfg.save(tmp_path / "c.json")
    assert load_pattern_config(tmp_path / "c.json") == cfg


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"model": "m", "layers": [[{"pattern": "nope"}]]}), "layers.0.0"),
        (
            json.dumps({"model": "m", "layers": [[{"pattern": "a_shape", "window": 0}]]}),
            "window",
        ),
        (json.dumps({"model": "m", "layers": [], "extra": 1}), "extra"),
        # two blocks would be the diagonal alone: the first block always comes with them
        (
            json.dumps({"model": "m", "layers": [[{"pattern": "block_sparse", "top_k": 2}]]}),
            "top_k",
        ),
        (json.dumps({"model": "m", "version": 9, "layers": []}), "version"),
    ],
)
def test_malformed_configs_fail_clearly(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_pattern_config(path)
    assert str(path) in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_pattern_config("/nonexistent/cfg.json")


def test_resolve_methods(tmp_path: Path) -> None:
    assert resolve_patterns(PrefillConfig(), "m", 2, 3) is None
    auto = resolve_patterns(PrefillConfig(method="minference"), "unknown-model", 2, 3)
    assert auto == uniform_config("unknown-model", 2, 3, DEFAULT_PATTERN)
    a = resolve_patterns(PrefillConfig(method="a_shape"), "m", 2, 3)
    assert a is not None and a.layers[1][2] == AShape(sinks=128, window=3968)
    path = tmp_path / "c.json"
    uniform_config("m", 1, 3, AShape()).save(path)
    with pytest.raises(ConfigError, match="expected 2 layers of 3 heads"):
        resolve_patterns(PrefillConfig(method="minference", config=str(path)), "m", 2, 3)


def test_generator_prefill_option_round_trips_through_yaml(tmp_path: Path) -> None:
    from ragline import Pipeline

    text = (
        "name: p\nstages:\n  - type: generator.hf\n    model: x\n"
        "    prefill: {method: vertical_slash, config: auto, min_len: 20000}\n"
    )
    (tmp_path / "p.yaml").write_text(text)
    pipe = Pipeline.from_yaml(tmp_path / "p.yaml")
    again = Pipeline.from_config(pipe.to_config())
    assert again.to_config() == pipe.to_config()
    assert pipe.to_config()["stages"][0]["prefill"] == {
        "method": "vertical_slash",
        "min_len": 20000,
    }


def test_generator_rejects_unknown_method(tmp_path: Path) -> None:
    from ragline import Pipeline

    text = "stages:\n  - type: generator.hf\n    prefill: {method: flash}\n"
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(ConfigError, match="prefill"):
        Pipeline.from_yaml(tmp_path / "p.yaml")


def test_switch_over_is_the_measured_length_of_the_slowest_pattern() -> None:
    from ragline.attention.config import BlockSparse, Dense
    from ragline.attention.prefill import switch_over

    assert switch_over(uniform_config("m", 1, 2, AShape())) == 16384
    mixed = SparsePrefillConfig(model="m", layers=[[AShape(), BlockSparse(), Dense()]])
    assert switch_over(mixed) == 32768


def test_shipped_smollm2_config_loads_and_auto_picks_it() -> None:
    from ragline.attention.config import shipped_config

    cfg = shipped_config("smollm2-135m-instruct")
    assert cfg is not None and cfg.model == "smollm2-135m-instruct"
    cfg.check_shape(30, 9)  # SmolLM2-135M: 30 layers, 9 query heads
    assert all(h.recall is not None for layer in cfg.layers for h in layer)
    auto = resolve_patterns(PrefillConfig(method="minference"), "smollm2-135m-instruct", 30, 9)
    assert auto == cfg
