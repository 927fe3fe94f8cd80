"""Packed decoding: each packed row's states equal the model's own forward over that row alone."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from ragline.compressors.packed import PackedDecoder, packing_refusal

SMALL = {
    "vocab_size": 97,
    "hidden_size": 48,
    "intermediate_size": 80,
    "num_hidden_layers": 2,
    "num_attention_heads": 6,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
}


def _model(kind: str, **extra: Any) -> Any:
    torch.manual_seed(len(kind))
    classes = {
        "llama": (LlamaConfig, LlamaForCausalLM, {"attention_bias": True, "mlp_bias": True}),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM, {}),
        "mistral": (MistralConfig, MistralForCausalLM, {"sliding_window": 40}),
        "qwen3": (Qwen3Config, Qwen3ForCausalLM, {}),
        "gemma3": (Gemma3TextConfig, Gemma3ForCausalLM, {"head_dim": 8}),
    }
    config_cls, model_cls, defaults = classes[kind]
    config = config_cls(**SMALL, **{**defaults, **extra})
    model = model_cls(config).eval()
    with torch.no_grad():  # random biases: zeros would hide a bias applied to the wrong slice
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_()
    return model


def _rows(lengths: list[int], seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(97) for _ in range(n)] for n in lengths]


def _alone(model: Any, row: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return model.get_decoder()(input_ids=torch.tensor([row])).last_hidden_state[0]


@pytest.mark.parametrize("kind", ["llama", "qwen2", "mistral"])
@pytest.mark.parametrize("seed", [0, 1])
def test_packed_rows_equal_the_model_reading_each_alone(kind: str, seed: int) -> None:
    model = _model(kind)
    lengths = random.Random(seed).choices([1, 2, 7, 13, 33, 40], k=5)
    rows = _rows(lengths, seed)
    want = [_alone(model, r) for r in rows]
    with torch.inference_mode():
        got = PackedDecoder(model)(rows)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_fusing_leaves_the_models_own_forward_unchanged() -> None:
    model = _model("llama")
    ids = torch.tensor([_rows([29], 3)[0]])
    with torch.inference_mode():
        before = model(input_ids=ids).logits
        PackedDecoder(model)
        after = model(input_ids=ids).logits
    assert torch.equal(before, after)
    attn = model.get_decoder().layers[0].self_attn
    assert attn.k_proj.weight.data_ptr() > attn.q_proj.weight.data_ptr()  # one shared buffer


def test_packed_follows_the_model_to_another_dtype() -> None:
    model = _model("qwen2")
    packed = PackedDecoder(model)
    model.to(torch.float64)  # replaces every parameter, breaking the fused views
    rows = _rows([5, 17], 4)
    with torch.inference_mode():
        got = packed(rows)
    for g, r in zip(got, rows, strict=True):
        assert g.dtype == torch.float64
        torch.testing.assert_close(g, _alone(model, r), rtol=1e-10, atol=1e-10)


def test_sliding_window_rows_longer_than_the_window_do_not_fit() -> None:
    packed = PackedDecoder(_model("mistral"))
    assert packed.window == 40
    assert packed.fits([40, 3]) and not packed.fits([41])
    assert PackedDecoder(_model("qwen2")).window is None  # no sliding layers configured


@pytest.mark.parametrize(
    ("kind", "reason"), [("qwen3", "qwen3"), ("gemma3", "gemma3"), ("llama+qk-norm", "normalises")]
)
def test_other_layer_shapes_are_refused_with_the_reason(kind: str, reason: str) -> None:
    model = _model(kind.split("+")[0])
    if kind.endswith("qk-norm"):  # a Llama-typed model whose layer is not the Llama layer
        model.get_decoder().layers[1].self_attn.q_norm = torch.nn.Identity()
    assert reason in (packing_refusal(model) or "")
    with pytest.raises(ValueError, match=reason):
        PackedDecoder(model)


def test_empty_row_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one token"):
        PackedDecoder(_model("llama"))([[1, 2], []])
