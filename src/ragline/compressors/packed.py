"""A Llama-family decoder run over many short sequences packed into one row, without padding.

Scoring reads twenty ~150-token documents at a time. Padded batches of them run the
projections as many short matrix products; on a CPU those are the bound, and one packed row
of ~3000 tokens runs them as single wide products (25 % less decoder time, interleaved with
the padded path, on a 2-core AMX Xeon for NQ top-20 inputs with SmolLM2-135M; end to end,
`benchmarks/compression.py` against `--ragline-option packed=false`). The
attention is the only part that sees sequence boundaries: it runs per sequence, with positions
restarting at 0, so each sequence's states equal what the model computes for it alone (up to
the rounding of differently blocked matrix products).

Everything else is the model's own arithmetic on its own weights (RMSNorm, projections, rotary
embedding, MLP), written as two functions per layer (before and after attention), so the
supported families are those whose decoder layer is exactly: RMSNorm, rotary self-attention with
rotate-half RoPE and `o_proj`, residual, RMSNorm, gated MLP, residual.

With `compile=True` those two functions run through `torch.compile` (one graph each, dynamic in
the token count, shared by every layer): on a CPU it fuses the elementwise chains (norms, RoPE,
SiLU x up, residuals) that the eager path runs as separate passes over `[tokens, width]` tensors.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ragline.errors import RaglineError

if TYPE_CHECKING:
    import torch

__all__ = ["PackedDecoder", "linear_refusal", "packing_refusal"]

# Families whose decoder layer is the plain pre-norm Llama layer (Qwen2 adds q/k/v biases,
# which the projection modules carry; Mistral adds an optional sliding window).
_FAMILIES = ("llama", "mistral", "qwen2")


def packing_refusal(model: Any) -> str | None:
    """Why `model` cannot run packed (None when it can)."""
    cfg = getattr(model, "config", None)
    kind = getattr(cfg, "model_type", None)
    if kind not in _FAMILIES:
        return f"model type {kind!r} is not one of {', '.join(_FAMILIES)}"
    dec = model.get_decoder()
    for name in ("embed_tokens", "layers", "norm", "rotary_emb"):
        if not hasattr(dec, name):
            return f"its decoder has no {name!r}"
    for layer in dec.layers:
        reason = _layer_refusal(layer)
        if reason is not None:
            return reason
    rope = str(getattr(dec.rotary_emb, "rope_type", "default"))
    if "dynamic" in rope:
        # its frequencies depend on the longest position in the call, i.e. on the packed rows
        return f"its rotary embedding ({rope!r}) rescales with the sequence length"
    return None


def _layer_refusal(layer: Any) -> str | None:
    """Why decoder `layer` is not the plain Llama layer the packed path computes (None: it is)."""
    attn = layer.self_attn
    if not all(hasattr(attn, p) for p in ("q_proj", "k_proj", "v_proj", "o_proj", "scaling")):
        return "an attention module lacks q/k/v/o projections or a scaling"
    if getattr(attn, "q_norm", None) is not None:
        return "its attention normalises queries and keys (not the Llama layer)"
    for norm in (layer.input_layernorm, layer.post_attention_layernorm):
        reason = _norm_refusal(norm)
        if reason is not None:
            return reason
    for group in (
        (attn.q_proj, attn.k_proj, attn.v_proj),
        (layer.mlp.gate_proj, layer.mlp.up_proj),
        (attn.o_proj,),
        (layer.mlp.down_proj,),
    ):
        for m in group:
            reason = linear_refusal(m)
            if reason is not None:
                return reason
        if len({m.bias is None for m in group}) > 1:
            return "some of its fused projections have biases and some do not"
    return None


def linear_refusal(m: Any) -> str | None:
    """Why the packed path could not stand in for module `m`'s own forward (None: it can)."""
    import torch

    if type(m) is not torch.nn.Linear:
        return f"a projection is a {type(m).__name__}, not a plain Linear (adapters, quantisation)"
    if m._forward_hooks or m._forward_pre_hooks or hasattr(m, "_hf_hook"):
        return "a projection has forward hooks (offloading, adapters)"
    if not m.weight.is_floating_point() or m.weight.device.type == "meta":
        return "a projection's weight is not a materialised floating-point tensor"
    return None


def _norm_refusal(m: Any) -> str | None:
    """Why `_rms_norm` could not stand in for norm module `m` (None: it can)."""
    if not type(m).__name__.endswith("RMSNorm") or not hasattr(m, "variance_epsilon"):
        return f"a layer norm is a {type(m).__name__}, not the Llama RMSNorm"
    if m._forward_hooks or m._forward_pre_hooks or hasattr(m, "_hf_hook"):
        return "a layer norm has forward hooks"
    return None


def _silu(act: Any) -> bool:
    """Whether activation module `act` is plain SiLU (the one activation compiled layers take)."""
    import torch
    from transformers.activations import SiLUActivation

    return type(act) in (torch.nn.SiLU, SiLUActivation) and not (
        act._forward_hooks or act._forward_pre_hooks
    )


def _window(cfg: Any) -> int | None:
    """The narrowest sliding window any layer applies (None: full attention everywhere)."""
    window = getattr(cfg, "sliding_window", None)
    if window is None:
        return None
    types = getattr(cfg, "layer_types", None)
    if cfg.model_type == "qwen2" and types is not None and "sliding_attention" not in types:
        return None
    return int(window)


class PackedDecoder:
    """Last hidden states of several token sequences from one padding-free forward pass."""

    def __init__(self, model: Any, *, compile: bool = False) -> None:
        reason = packing_refusal(model)
        if reason is not None:
            raise ValueError(f"PackedDecoder: {reason}")
        self._dec = model.get_decoder()
        cfg = model.config
        self._heads = cfg.num_attention_heads
        self._kv_heads = cfg.num_key_value_heads
        self._head_dim = (
            getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        )
        self.window = _window(cfg)
        """Sequences longer than this would meet the sliding window: `fits` refuses them."""
        for layer in self._dec.layers:
            _fused(layer)
        self.compiled = compile
        if compile:
            acts = {type(layer.mlp.act_fn).__name__ for layer in self._dec.layers}
            if not all(_silu(layer.mlp.act_fn) for layer in self._dec.layers):
                raise RaglineError(
                    f"compressor: compile needs SiLU MLPs; this model's are {sorted(acts)}. "
                    "Set compile: false to score it eagerly"
                )
            self._compile()

    def _compile(self) -> None:
        """Compile both layer halves now, on two short rows, so failures surface here."""
        import torch

        try:
            with torch.inference_mode():
                self([[0] * 5, [0] * 3])
        except Exception as e:
            raise RaglineError(
                f"compressor: torch.compile could not build the packed decoder ({e}); on a CPU "
                "it needs a working C++ compiler and the Python headers. Set compile: false to "
                "run it eagerly"
            ) from e

    def fits(self, lengths: Sequence[int]) -> bool:
        """Whether sequences of these lengths are computed exactly (no sliding window reached)."""
        return self.window is None or max(lengths, default=0) <= self.window

    def __call__(self, rows: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """Final-norm hidden states `[len(row), hidden]` of each row, read alone."""
        import torch
        import torch.nn.functional as F

        if not rows or any(len(r) == 0 for r in rows):
            raise ValueError("PackedDecoder: every row needs at least one token")
        dec = self._dec
        dev = dec.embed_tokens.weight.device
        lens = [len(r) for r in rows]
        bounds = [0, *itertools.accumulate(lens)]
        spans = list(itertools.pairwise(bounds))
        n_tok, h, hk, d = bounds[-1], self._heads, self._kv_heads, self._head_dim
        ids = torch.tensor([t for r in rows for t in r], dtype=torch.long, device=dev)[None]
        pos = torch.cat([torch.arange(n, device=dev) for n in lens])[None]
        x = dec.embed_tokens(ids)
        cos, sin = dec.rotary_emb(x, pos)
        cos, sin = cos[:, :, None], sin[:, :, None]  # [1, N, 1, D]: broadcast over heads
        before, after = (
            _compiled_halves() if self.compiled else (_before_attention, _after_attention)
        )
        for layer in dec.layers:
            attn, mlp = layer.self_attn, layer.mlp
            norm1, norm2 = layer.input_layernorm, layer.post_attention_layernorm
            qkv_w, qkv_b, gu_w, gu_b = _fused(layer)
            q, k, v = before(x, norm1.weight, norm1.variance_epsilon, qkv_w, qkv_b, cos, sin, h, hk)
            o = torch.empty(1, n_tok, h, d, dtype=x.dtype, device=dev)
            for a, b in spans:
                o[:, a:b] = F.scaled_dot_product_attention(
                    q[:, :, a:b], k[:, :, a:b], v[:, :, a:b],
                    is_causal=True, scale=attn.scaling, enable_gqa=hk != h,
                ).transpose(1, 2)  # fmt: skip
            x = after(
                x, o.view(1, n_tok, h * d), attn.o_proj.weight, attn.o_proj.bias,
                norm2.weight, norm2.variance_epsilon, gu_w, gu_b,
                mlp.down_proj.weight, mlp.down_proj.bias, F.silu if self.compiled else mlp.act_fn,
            )  # fmt: skip
        x = dec.norm(x)[0]
        return [x[a:b] for a, b in spans]


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Llama's RMSNorm, step for step (float32 statistics, then the weight in x's dtype)."""
    import torch

    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def _before_attention(
    x: torch.Tensor,
    norm_w: torch.Tensor,
    eps: float,
    qkv_w: torch.Tensor,
    qkv_b: torch.Tensor | None,
    cos: torch.Tensor,
    sin: torch.Tensor,
    heads: int,
    kv_heads: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries and keys (RoPE applied) and values `[1, heads, N, D]` of residual stream `x`."""
    import torch
    import torch.nn.functional as F

    qkv = F.linear(_rms_norm(x, norm_w, eps), qkv_w, qkv_b)
    qkv = qkv.view(*x.shape[:2], heads + 2 * kv_heads, -1)
    # one rotate-half RoPE over the query and key heads together
    qk = qkv[:, :, : heads + kv_heads]
    half = qk.shape[-1] // 2
    qk = qk * cos + torch.cat([-qk[..., half:], qk[..., :half]], -1) * sin
    v = qkv[:, :, heads + kv_heads :]
    return qk[:, :, :heads].transpose(1, 2), qk[:, :, heads:].transpose(1, 2), v.transpose(1, 2)


def _after_attention(
    x: torch.Tensor,
    o: torch.Tensor,
    o_w: torch.Tensor,
    o_b: torch.Tensor | None,
    norm_w: torch.Tensor,
    eps: float,
    gu_w: torch.Tensor,
    gu_b: torch.Tensor | None,
    down_w: torch.Tensor,
    down_b: torch.Tensor | None,
    act: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """The residual stream after the attention output `o` `[1, N, heads x D]` and the MLP."""
    import torch.nn.functional as F

    x = x + F.linear(o, o_w, o_b)
    gate, up = F.linear(_rms_norm(x, norm_w, eps), gu_w, gu_b).chunk(2, -1)
    return x + F.linear(act(gate) * up, down_w, down_b)


@functools.cache
def _compiled_halves() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """`torch.compile`d `_before_attention` and `_after_attention`, one of each per process.

    Weights are arguments, not closed-over modules, so every layer (and every packed decoder of
    the same dtype) reuses one graph; `dynamic=True` keeps the token count symbolic from the
    first call, so new pack sizes do not recompile.
    """
    import torch

    return (
        torch.compile(_before_attention, dynamic=True),
        torch.compile(_after_attention, dynamic=True),
    )


def _fused(layer: Any) -> tuple[Any, Any, Any, Any]:
    """`(qkv_w, qkv_b, gu_w, gu_b)` of `layer`: its `[q; k; v]` and `[gate; up]` projections.

    Wide products are the point of packing: one 960-row weight instead of 576 + 192 + 192
    (SmolLM2), one of 3072 instead of two of 1536. The first call re-points the module
    parameters at row slices of one new tensor per group, so their values and the model's own
    forward are unchanged and nothing is held twice; later calls find them adjacent in memory
    and view them whole. Nothing is cached: after `model.to()` the old storage is freed and the
    next call fuses again.
    """
    attn, mlp = layer.self_attn, layer.mlp
    out: list[Any] = []
    for mods in ([attn.q_proj, attn.k_proj, attn.v_proj], [mlp.gate_proj, mlp.up_proj]):
        out.append(_as_one([m.weight for m in mods]))
        out.append(None if mods[0].bias is None else _as_one([m.bias for m in mods]))
    return out[0], out[1], out[2], out[3]


def _as_one(params: Sequence[Any]) -> torch.Tensor:
    """`params` concatenated along dim 0, as a view when they already lie end to end."""
    import torch

    first = params[0]
    end = first.data_ptr()
    adjacent = True
    for p in params:
        if (
            p.data_ptr() != end
            or not p.is_contiguous()
            or p.dtype != first.dtype
            or p.shape[1:] != first.shape[1:]
            or p.untyped_storage().data_ptr() != first.untyped_storage().data_ptr()
        ):
            adjacent = False
            break
        end += p.numel() * p.element_size()
    rows = sum(p.shape[0] for p in params)
    if adjacent:
        return first.detach().as_strided((rows, *first.shape[1:]), first.stride())
    # Outside inference mode: the model is shared, and inference tensors as its parameters
    # would refuse autograd to every later user.
    with torch.inference_mode(False), torch.no_grad():
        fused = torch.cat([p.data for p in params])
        row = 0
        for p in params:
            p.data = fused[row : row + p.shape[0]]
            row += p.shape[0]
    return fused
