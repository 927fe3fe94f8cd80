"""End-to-end prefill of a random-weight Llama-3-8B-shaped model: dense SDPA vs sparse patterns."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import torch

from ragline.attention.config import AShape, BlockSparse, HeadPattern, uniform_config
from ragline.attention.hf import install_sparse_prefill, uninstall_sparse_prefill
from ragline.attention.sparse import SparsePrefill

# fixed-density configurations (indices independent of the random weights' attention)
E2E_PATTERNS: dict[str, tuple[str, HeadPattern]] = {
    "block_sparse": ("top100", BlockSparse(top_k=100)),
    "a_shape": ("fixed", AShape(sinks=128, window=3968)),
    "vertical_slash": ("banded", AShape(sinks=1000, window=6096)),
}


def build_llama8b_shaped(layers: int = 32) -> Any:
    """Llama-3-8B's shapes with random weights, bf16 on the GPU (timing needs shapes, not weights)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=1 << 21,
        rope_theta=500000.0,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    model.set_attn_implementation("sdpa")
    return model


def _prefill_s(model: Any, ids: torch.Tensor, reps: int) -> float:
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            model(input_ids=ids, use_cache=False, logits_to_keep=1)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        gc.collect()
    return sorted(times)[len(times) // 2]


def run_e2e(
    lengths: list[int], out_of_time: Callable[[], bool], log: Callable[[str], None]
) -> list[dict]:
    """Dense (SDPA, cuDNN preferred) then each fixed-density pattern at every length."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    rows: list[dict] = []
    model = build_llama8b_shaped()
    n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
    gen = torch.Generator(device="cuda").manual_seed(1)
    dense: dict[int, float] = {}
    backends = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION]
    with sdpa_kernel(backends):
        _prefill_s(model, torch.randint(0, 128256, (1, 4096), device="cuda", generator=gen), 1)
        for n in lengths:
            if out_of_time():
                break
            ids = torch.randint(0, 128256, (1, n), device="cuda", generator=gen)
            dense[n] = _prefill_s(model, ids, 2 if n <= 131072 else 1)
            log(f"e2e dense {n}: {dense[n]:.2f} s")
        for name, (indices, pattern) in E2E_PATTERNS.items():
            cfg = uniform_config("llama-3-8b-shaped", n_layers, n_heads, pattern)
            runtime = SparsePrefill(cfg, min_len=1)
            install_sparse_prefill(model, runtime)
            _prefill_s(model, torch.randint(0, 128256, (1, 16384), device="cuda", generator=gen), 1)
            for n in lengths:
                if n not in dense or out_of_time():
                    continue
                ids = torch.randint(0, 128256, (1, n), device="cuda", generator=gen)
                try:
                    before = runtime.sparse_calls
                    s = _prefill_s(model, ids, 2 if n <= 131072 else 1)
                    rows.append(
                        {"pattern": name, "indices": indices, "seq_len": n, "dense_s": dense[n],
                         "sparse_s": s, "speedup": dense[n] / s,
                         "sparse_layer_calls": runtime.sparse_calls - before}
                    )  # fmt: skip
                    log(f"e2e {name} {n}: {s:.2f} s ({dense[n] / s:.2f}x)")
                except Exception as err:  # recorded, not hidden
                    rows.append({"pattern": name, "seq_len": n, "error": repr(err)[:300]})
                    log(f"e2e {name} {n}: FAILED {err!r}")
            uninstall_sparse_prefill(model, "sdpa")
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return rows
