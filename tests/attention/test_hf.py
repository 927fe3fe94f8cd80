"""The transformers integration on a tiny random Llama: logits against eager attention."""

from __future__ import annotations

import pytest
import torch

from ragline.attention.config import (
    AShape,
    BlockSparse,
    Dense,
    SparsePrefillConfig,
    VerticalSlash,
    uniform_config,
)
from ragline.attention.hf import install_sparse_prefill, uninstall_sparse_prefill
from ragline.attention.sparse import SparsePrefill
from ragline.errors import ConfigError

pytest.importorskip("triton")
transformers = pytest.importorskip("transformers")

T = 300  # three query blocks of 128, the last one partial


@pytest.fixture(scope="module")
def tiny() -> transformers.PreTrainedModel:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=128,
        hidden_size=256,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=1024,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


def _logits(model: transformers.PreTrainedModel, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def _eager(model: transformers.PreTrainedModel, ids: torch.Tensor) -> torch.Tensor:
    uninstall_sparse_prefill(model, "eager")
    return _logits(model, ids)


MIXED = [
    [
        AShape(sinks=64, window=100),
        VerticalSlash(vertical=80, slash=90),
        BlockSparse(top_k=3),
        Dense(),
    ],
    [BlockSparse(top_k=3), Dense(), AShape(sinks=0, window=1), VerticalSlash(vertical=1, slash=1)],
]


def test_dense_equivalent_heads_give_eager_logits(tiny: transformers.PreTrainedModel) -> None:
    ids = torch.randint(0, 128, (1, T), generator=torch.Generator().manual_seed(1))
    want = _eager(tiny, ids)
    wide = [
        Dense(),
        AShape(sinks=0, window=T),
        VerticalSlash(vertical=T, slash=T),
        BlockSparse(top_k=10),
    ]
    # every head through the kernels, even those too dense to pay off (the guard is off)
    runtime = SparsePrefill(
        SparsePrefillConfig(model="t", layers=[wide] * 2), min_len=1, dense_above=float("inf")
    )
    install_sparse_prefill(tiny, runtime)
    got = _logits(tiny, ids)
    assert runtime.dense_heads == 0
    assert tiny.config._attn_implementation == "ragline_sparse"
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_real_patterns_kernel_path_equals_reference_path(
    tiny: transformers.PreTrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = torch.randint(0, 128, (1, T), generator=torch.Generator().manual_seed(2))
    dense = _eager(tiny, ids)
    runtime = SparsePrefill(
        SparsePrefillConfig(model="t", layers=MIXED), min_len=1, dense_above=float("inf")
    )
    install_sparse_prefill(tiny, runtime)
    kernel = _logits(tiny, ids)
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # same patterns through the mask references
    reference = _logits(tiny, ids)
    torch.testing.assert_close(kernel, reference, atol=2e-5, rtol=1e-4)
    assert not torch.allclose(kernel, dense, atol=1e-3)  # the patterns really dropped keys


def test_short_prompts_and_decode_stay_dense(tiny: transformers.PreTrainedModel) -> None:
    ids = torch.randint(0, 128, (1, 40), generator=torch.Generator().manual_seed(3))
    want = _eager(tiny, ids)
    with torch.no_grad():
        want_gen = tiny.generate(ids, max_new_tokens=5, do_sample=False)
    cfg = uniform_config("t", 2, 4, AShape(sinks=1, window=1))
    install_sparse_prefill(tiny, SparsePrefill(cfg, min_len=64))
    torch.testing.assert_close(_logits(tiny, ids), want, atol=2e-5, rtol=1e-4)
    with torch.no_grad():
        got_gen = tiny.generate(ids, max_new_tokens=5, do_sample=False)
    assert torch.equal(got_gen, want_gen)


def test_wrong_shape_config_is_refused(tiny: transformers.PreTrainedModel) -> None:
    with pytest.raises(ConfigError, match="expected 2 layers of 4 heads"):
        install_sparse_prefill(tiny, SparsePrefill(uniform_config("t", 3, 4, Dense()), min_len=1))


def test_head_dims_the_kernels_do_not_take_are_refused_at_install() -> None:
    from ragline.errors import KernelUnavailable

    cfg = transformers.LlamaConfig(
        vocab_size=32, hidden_size=64, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(cfg).eval()
    with pytest.raises(KernelUnavailable, match=r"head dim 32.*method: dense"):
        install_sparse_prefill(model, SparsePrefill(uniform_config("t", 1, 2, Dense()), min_len=1))
    assert model.config._attn_implementation != "ragline_sparse"


def test_windowed_capture_attention_equals_sdpa_with_the_sliding_mask() -> None:
    from ragline.attention.hf import _windowed_attention

    g = torch.Generator().manual_seed(8)
    t, window = 403, 64
    q = torch.randn(1, 4, t, 32, generator=g)
    k, v = torch.randn(1, 2, t, 32, generator=g), torch.randn(1, 2, t, 32, generator=g)
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    mask = (j <= i) & (j > i - window)
    want = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), attn_mask=mask, scale=0.3
    )
    got = _windowed_attention(q, k, v, window, 0.3)
    torch.testing.assert_close(got, want.transpose(1, 2), atol=1e-5, rtol=1e-5)


def test_capture_folds_the_model_scale_into_the_queries(
    tiny: transformers.PreTrainedModel,
) -> None:
    from ragline.attention.hf import capture_queries_keys

    ids = torch.randint(0, 128, (1, 40), generator=torch.Generator().manual_seed(9))
    plain = capture_queries_keys(tiny, ids)
    attn = [m for m in tiny.modules() if hasattr(m, "scaling")]
    saved = [m.scaling for m in attn]
    try:
        for m in attn:
            m.scaling = 0.5  # a model whose logits are q.k / 2, not q.k / 8
        scaled = capture_queries_keys(tiny, ids)
    finally:
        for m, s in zip(attn, saved, strict=True):
            m.scaling = s
    q0, q1 = plain[0][0], scaled[0][0]
    torch.testing.assert_close(q1, q0 * 0.5 * 64**0.5)
    torch.testing.assert_close(scaled[0][1], plain[0][1])


def test_vertical_slash_heads_too_dense_to_pay_off_run_dense(
    tiny: transformers.PreTrainedModel,
) -> None:
    ids = torch.randint(0, 128, (1, T), generator=torch.Generator().manual_seed(10))
    want = _eager(tiny, ids)
    # Random weights scatter the estimated slashes: most tiles end up computed, so at a low
    # threshold every vertical-slash head goes to SDPA and the logits are the dense ones.
    layer = [VerticalSlash(vertical=70, slash=90), VerticalSlash(vertical=64, slash=64),
             AShape(sinks=64, window=64), BlockSparse(top_k=3)]  # fmt: skip
    cfg = SparsePrefillConfig(model="t", layers=[layer] * 2)
    strict = SparsePrefill(cfg, min_len=1, dense_above=0.0)
    install_sparse_prefill(tiny, strict)
    got = _logits(tiny, ids)
    assert strict.dense_heads == 2 * 3  # the three vertical-slash-kernel heads of both layers
    lax = SparsePrefill(cfg, min_len=1, dense_above=float("inf"))
    install_sparse_prefill(tiny, lax)
    sparse = _logits(tiny, ids)
    assert lax.dense_heads == 0
    uninstall_sparse_prefill(tiny)
    # block-sparse heads still drop keys, so neither equals eager; the strict run is closer
    assert (got - want).abs().max() < (sparse - want).abs().max()


def test_gemma3_full_layers_go_sparse_at_head_dim_256(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Gemma 3 shape: head dim 256, a sliding-window layer (kept on SDPA) and a full one.

    Dense-equivalent patterns on the full layer give the eager logits; real patterns change them
    and equal the mask references, so the 256-wide kernels ran inside a real model's forward.
    """
    torch.manual_seed(0)
    cfg = transformers.Gemma3TextConfig(
        vocab_size=128, hidden_size=128, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, head_dim=256, sliding_window=64,
        layer_types=["sliding_attention", "full_attention"], query_pre_attn_scalar=64,
        max_position_embeddings=1024,
    )  # fmt: skip
    model = transformers.Gemma3ForCausalLM(cfg).eval()
    ids = torch.randint(0, 128, (1, T), generator=torch.Generator().manual_seed(4))
    want = _eager(model, ids)
    wide = [Dense(), AShape(sinks=0, window=T), VerticalSlash(vertical=T, slash=T),
            BlockSparse(top_k=10)]  # fmt: skip
    runtime = SparsePrefill(
        SparsePrefillConfig(model="g", layers=[[Dense()] * 4, wide]),
        min_len=1, dense_above=float("inf"),
    )  # fmt: skip
    install_sparse_prefill(model, runtime)
    torch.testing.assert_close(_logits(model, ids), want, atol=2e-5, rtol=1e-4)
    assert runtime.sparse_calls == 1  # the sliding-window layer stayed on SDPA
    install_sparse_prefill(
        model, SparsePrefill(SparsePrefillConfig(model="g", layers=MIXED), min_len=1)
    )
    kernel = _logits(model, ids)
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # same patterns through the mask references
    reference = _logits(model, ids)
    uninstall_sparse_prefill(model)
    torch.testing.assert_close(kernel, reference, atol=2e-5, rtol=1e-4)
    assert not torch.allclose(kernel, want, atol=1e-3)
