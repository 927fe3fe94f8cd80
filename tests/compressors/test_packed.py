"""Packed decoding: each packed row's states equal the model's own forward over that row alone."""

from __future__ import annotations

import random
import shutil
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

import ragline.compressors.packed as packed_mod
from ragline.compressors.packed import PackedDecoder, packing_refusal
from ragline.errors import RaglineError

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
    config = config_cls(**{**SMALL, **defaults, **extra})
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


@pytest.mark.parametrize("kind", ["llama", "qwen2", "mistral", "llama-mha"])
@pytest.mark.parametrize("seed", [0, 1])
def test_packed_rows_equal_the_model_reading_each_alone(kind: str, seed: int) -> None:
    model = _model("llama", num_key_value_heads=6) if kind == "llama-mha" else _model(kind)
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
    q, k = attn.q_proj.weight, attn.k_proj.weight
    assert k.data_ptr() == q.data_ptr() + q.numel() * q.element_size()  # one buffer, in order


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


def test_bfloat16_rows_match_the_model_reading_each_alone() -> None:
    model = _model("llama").to(torch.bfloat16)
    rows = _rows([3, 30, 11], 6)
    with torch.inference_mode():
        got = PackedDecoder(model)(rows)
    for g, r in zip(got, rows, strict=True):
        want = _alone(model, r).float()
        assert (g.float() - want).abs().max() <= 0.05 * want.abs().max()


def test_fusing_inside_inference_mode_keeps_the_shared_weights_trainable() -> None:
    model = _model("llama")
    with torch.inference_mode():
        packed = PackedDecoder(model)
    model.to(torch.float64)  # parameters replaced: the next call fuses again
    with torch.inference_mode():
        packed(_rows([4], 0))
    for p in model.parameters():
        assert not p.is_inference()
    model(input_ids=torch.tensor([[1, 2, 3]])).logits.sum().backward()


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


def test_wrapped_or_hooked_projections_and_dynamic_rope_are_refused() -> None:
    class Adapter(torch.nn.Linear):
        pass

    model = _model("llama")
    layer = model.get_decoder().layers[0]
    old = layer.mlp.up_proj
    layer.mlp.up_proj = Adapter(old.in_features, old.out_features, bias=old.bias is not None)
    assert "Adapter" in (packing_refusal(model) or "")
    layer.mlp.up_proj = old
    handle = layer.self_attn.k_proj.register_forward_hook(lambda *a: None)
    assert "hooks" in (packing_refusal(model) or "")
    handle.remove()
    assert packing_refusal(model) is None
    handle = layer.mlp.down_proj.register_forward_pre_hook(lambda *a: None)
    assert "hooks" in (packing_refusal(model) or "")  # o/down projections are read directly too
    handle.remove()
    norm = layer.post_attention_layernorm
    layer.post_attention_layernorm = torch.nn.LayerNorm(norm.weight.shape[0])
    assert "LayerNorm" in (packing_refusal(model) or "")
    layer.post_attention_layernorm = norm
    assert packing_refusal(model) is None
    dynamic = _model("llama", rope_parameters={"rope_type": "dynamic", "factor": 2.0})
    assert "dynamic" in (packing_refusal(dynamic) or "")


def test_empty_row_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one token"):
        PackedDecoder(_model("llama"))([[1, 2], []])


@pytest.mark.skipif(
    not any(shutil.which(c) for c in ("c++", "g++", "clang++")),
    reason="torch.compile on a CPU needs a C++ compiler",
)
def test_compiled_layers_equal_the_eager_ones_over_changing_pack_sizes() -> None:
    model = _model("llama")  # q/k/v, o, gate/up and down biases: every optional input is set
    eager = PackedDecoder(model)
    compiled = PackedDecoder(model, compile=True)
    assert compiled.compiled and not eager.compiled
    with torch.inference_mode():
        for seed, lengths in enumerate([[9, 1, 33], [40, 40, 2, 17, 5]]):
            rows = _rows(lengths, seed)
            for g, w in zip(compiled(rows), eager(rows), strict=True):
                torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


def test_compile_refuses_other_activations_and_reports_build_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = _model("llama", hidden_act="gelu")
    with pytest.raises(RaglineError, match="SiLU"):
        PackedDecoder(model, compile=True)
    PackedDecoder(model)  # eager packing runs any activation module

    def broken(*args: Any) -> Any:
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(packed_mod, "_compiled_halves", lambda: (broken, broken))
    with pytest.raises(RaglineError, match=r"no C\+\+ compiler found.*compile: false"):
        PackedDecoder(_model("qwen2"), compile=True)
