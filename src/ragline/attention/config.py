"""Per-head sparse-prefill pattern configs: schema, loading, saving and the documented default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragline.errors import ConfigError

__all__ = [
    "CONFIG_FORMAT",
    "DEFAULT_PATTERN",
    "AShape",
    "BlockSparse",
    "Dense",
    "HeadPattern",
    "SparsePrefillConfig",
    "VerticalSlash",
    "load_pattern_config",
    "shipped_config",
    "uniform_config",
]

CONFIG_FORMAT: Literal["ragline.sparse-prefill"] = "ragline.sparse-prefill"
_SHIPPED = Path(__file__).parent / "configs"


class _Pattern(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    recall: float | None = Field(default=None, ge=0.0, le=1.0)
    """Attention-mass recall the calibration measured for this head, if calibrated."""


class AShape(_Pattern):
    """The first `sinks` keys plus a window of the `window` nearest keys."""

    pattern: Literal["a_shape"] = "a_shape"
    sinks: int = Field(default=128, ge=0)
    window: int = Field(default=3968, ge=1)


class VerticalSlash(_Pattern):
    """`vertical` key columns and `slash` diagonals, estimated per prompt from the last 64 queries."""

    pattern: Literal["vertical_slash"] = "vertical_slash"
    vertical: int = Field(default=1000, ge=1)
    slash: int = Field(default=6096, ge=1)


class BlockSparse(_Pattern):
    """The `top_k` key blocks of 64 per query block of 128: its own two, the first, the best others."""

    pattern: Literal["block_sparse"] = "block_sparse"
    top_k: int = Field(default=100, ge=3)


class Dense(_Pattern):
    """Every causal key (the pattern's kernel with a full diagonal band)."""

    pattern: Literal["dense"] = "dense"


HeadPattern = Annotated[
    AShape | VerticalSlash | BlockSparse | Dense, Field(discriminator="pattern")
]

#: The documented default for a model without a calibrated config: vertical-slash 1000/6096.
DEFAULT_PATTERN = VerticalSlash()


class SparsePrefillConfig(BaseModel):
    """A model's per-layer, per-head prefill patterns (the JSON `ragline calibrate` writes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["ragline.sparse-prefill"] = CONFIG_FORMAT
    version: Literal[1] = 1
    model: str
    """The model the patterns were searched for (its short name or path)."""
    layers: list[list[HeadPattern]]
    """`layers[i][h]`: the pattern of query head `h` in layer `i`."""
    budget: float | None = None
    """Target density the calibration searched under, if calibrated."""
    samples: int | None = None
    seq_len: int | None = None
    """Tokens per calibration sample."""

    def check_shape(self, num_layers: int, num_heads: int) -> None:
        """Raise `ConfigError` unless there is one pattern per head of every layer."""
        if len(self.layers) != num_layers or any(len(r) != num_heads for r in self.layers):
            got = f"{len(self.layers)} layers with {sorted({len(r) for r in self.layers})} heads"
            raise ConfigError(
                f"sparse-prefill config for {self.model!r}: expected {num_layers} layers of "
                f"{num_heads} heads, got {got}"
            )

    def save(self, path: str | Path) -> None:
        """Write the config as JSON (one head per line for readable diffs), never half."""
        from ragline.fsutil import atomic_write_text

        atomic_write_text(path, self.model_dump_json(indent=1, exclude_none=True) + "\n")


def uniform_config(
    model: str, num_layers: int, num_heads: int, pattern: HeadPattern
) -> SparsePrefillConfig:
    """Every head of every layer on one pattern (e.g. the default vertical-slash 1000/6096)."""
    return SparsePrefillConfig(model=model, layers=[[pattern] * num_heads] * num_layers)


def load_pattern_config(path: str | Path) -> SparsePrefillConfig:
    """Read and validate a config file; every problem is a `ConfigError` naming the file and field."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"sparse-prefill config {p}: no such file") from err
    except json.JSONDecodeError as err:
        raise ConfigError(f"sparse-prefill config {p}: not JSON ({err})") from err
    try:
        return SparsePrefillConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(
            f"sparse-prefill config {p}: {where}: {first['msg']} (got {first.get('input')!r}); "
            f"{err.error_count()} problem(s) in all"
        ) from err


def shipped_config(model: str) -> SparsePrefillConfig | None:
    """The calibrated config shipped with ragline for a packaged model name, if any."""
    path = _SHIPPED / f"{Path(model).name}.json"
    return load_pattern_config(path) if path.is_file() else None
