"""The `prefill:` option of `generator.hf`: which attention prefill uses, and installing it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragline.attention.config import (
    DEFAULT_PATTERN,
    AShape,
    BlockSparse,
    HeadPattern,
    SparsePrefillConfig,
    VerticalSlash,
    load_pattern_config,
    shipped_config,
    uniform_config,
)
from ragline.attention.sparse import DENSE_ABOVE

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "SWITCH_OVER_TOKENS",
    "PrefillConfig",
    "install_prefill",
    "resolve_patterns",
    "switch_over",
]

#: Shortest prompt each pattern prefills sparsely, measured on an H100 (benchmarks/results/
#: sparse_prefill_h100.json, Llama-3-8B attention shape, reference budgets, index building
#: included): A-shape beats cuDNN dense from 16K (1.19x); banded vertical-slash and block-sparse
#: are slower at 16K (0.87x, 0.72x) and faster from 32K (1.83x, 1.60x). Lengths between 16K and
#: 32K were not measured, so the switch sits at the first measured length that wins.
SWITCH_OVER_TOKENS = {"a_shape": 16384, "vertical_slash": 32768, "block_sparse": 32768, "dense": 0}

Method = Literal["dense", "minference", "a_shape", "vertical_slash", "block_sparse"]
_UNIFORM: dict[str, HeadPattern] = {
    "a_shape": AShape(),
    "vertical_slash": VerticalSlash(),
    "block_sparse": BlockSparse(),
}


class PrefillConfig(BaseModel):
    """`prefill: {method, config, min_len}` of `generator.hf`.

    - `dense`: the model's own attention everywhere.
    - `minference`: per-head patterns from `config` (`auto`: the config shipped for the model,
      else the documented default, vertical-slash 1000/6096 on every head).
    - `a_shape`, `vertical_slash`, `block_sparse`: that pattern on every head at its reference
      budget (128 + 3968; 1000/6096; top-100 blocks of 64).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Method = "dense"
    config: str = "auto"
    """`auto` or the path of a JSON config written by `ragline calibrate`."""
    min_len: int | None = Field(default=None, ge=1)
    """Shortest prompt that prefills sparsely; default: the measured switch-over of the patterns
    in use (`SWITCH_OVER_TOKENS`)."""
    dense_above: float = Field(default=DENSE_ABOVE, gt=0.0)
    """Vertical-slash heads whose plan for a prompt computes more than this share of the causal
    tiles run dense SDPA instead (estimated indices can scatter that far on real prompts)."""


def resolve_patterns(
    prefill: PrefillConfig, model_name: str, num_layers: int, num_heads: int
) -> SparsePrefillConfig | None:
    """The per-head patterns `prefill` asks for, checked against the model's shape (None: dense)."""
    if prefill.method == "dense":
        return None
    if prefill.method in _UNIFORM:
        cfg = uniform_config(model_name, num_layers, num_heads, _UNIFORM[prefill.method])
    elif prefill.config != "auto":
        cfg = load_pattern_config(prefill.config)
    else:
        cfg = shipped_config(model_name) or uniform_config(
            model_name, num_layers, num_heads, DEFAULT_PATTERN
        )
    cfg.check_shape(num_layers, num_heads)
    return cfg


def switch_over(patterns: SparsePrefillConfig) -> int:
    """The measured switch-over length of the slowest-to-pay-off pattern the config uses."""
    used = {p.pattern for layer in patterns.layers for p in layer}
    return max(SWITCH_OVER_TOKENS[name] for name in used)


def install_prefill(model: PreTrainedModel, model_name: str, prefill: PrefillConfig) -> bool:
    """Install sparse prefill on `model` as `prefill` asks; returns whether it did.

    The model object may be shared with other stages naming the same model: they then prefill
    long prompts sparsely too (short prompts and decoding are unaffected).
    """
    from ragline.attention.hf import install_sparse_prefill
    from ragline.attention.sparse import SparsePrefill

    cfg = model.config
    patterns = resolve_patterns(prefill, model_name, cfg.num_hidden_layers, cfg.num_attention_heads)
    if patterns is None:
        return False
    min_len = prefill.min_len or switch_over(patterns)
    install_sparse_prefill(
        model, SparsePrefill(patterns, min_len=min_len, dense_above=prefill.dense_above)
    )
    return True
