"""transformers adapter: the `ragline_sparse` attention and mask functions, and installing them.

The only module that touches transformers' attention internals. Prefill of a prompt of at least
`min_len` tokens with no padding goes to `sparse_prefill_layer`; everything else (short prompts,
decode steps, padded batches, sliding-window layers) goes to transformers' own SDPA function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ragline.attention.sparse import SparsePrefill, sparse_prefill_layer

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

__all__ = [
    "ATTENTION_NAME",
    "capture_queries_keys",
    "install_sparse_prefill",
    "model_head_dim",
    "register",
    "uninstall_sparse_prefill",
]

ATTENTION_NAME = "ragline_sparse"
_CAPTURE_NAME = "ragline_capture"
_RUNTIME_ATTR = "_ragline_sparse_prefill"
_CAPTURE_ATTR = "_ragline_capture"


def _attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: `query [B, H, T, D]`, `key/value [B, H_kv, S, D]` ->
    `([B, T, H, D], None)`."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    runtime: SparsePrefill | None = getattr(module, _RUNTIME_ATTR, None)
    t = query.shape[2]
    layer = getattr(module, "layer_idx", None)
    if (
        runtime is None
        or layer is None
        or attention_mask is not None  # padding, sliding windows, or a cache with earlier tokens
        or t < runtime.min_len
        or key.shape[2] != t
        or kwargs.get("sliding_window")
    ):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    runtime.sparse_calls += 1
    lp = runtime.layer(layer, query.device)
    b, h = query.shape[:2]
    # The kernels write [B, T, H, D] memory directly: no 1 GB transposing copy at 128K tokens.
    # A layer of dense heads returns SDPA's own output, so it gets no buffer to hold.
    buf = (
        None
        if lp.sdpa_heads.numel() == h
        else query.new_empty(b, t, h, value.shape[-1]).transpose(1, 2)
    )
    out = sparse_prefill_layer(
        query, key, value, lp, scale, dense_above=runtime.dense_above, runtime=runtime, out=buf
    )
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    """Register `ragline_sparse` with transformers' AttentionInterface and AttentionMaskInterface.

    The mask function is transformers' own SDPA mask function (whatever its signature in the
    installed version): it returns None for plain causal prefill, which is what selects the
    sparse path, and a real mask wherever dense SDPA must run.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(ATTENTION_NAME, _attention)
    AttentionMaskInterface.register(ATTENTION_NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


def model_head_dim(config: Any) -> int:
    """A transformers config's attention head dim (`head_dim`, else hidden size / heads)."""
    return int(
        getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    )


def install_sparse_prefill(model: PreTrainedModel, runtime: SparsePrefill) -> None:
    """Route `model`'s attention through `ragline_sparse` with `runtime`'s per-head patterns.

    Example:
        >>> from ragline.attention.config import DEFAULT_PATTERN, uniform_config
        >>> cfg = uniform_config("m", 2, 4, DEFAULT_PATTERN)
        >>> install_sparse_prefill(model, SparsePrefill(cfg, min_len=16384))  # doctest: +SKIP
    """
    from ragline.errors import KernelUnavailable
    from ragline.kernels._common import kernel_refusal

    cfg = model.config
    runtime.config.check_shape(cfg.num_hidden_layers, cfg.num_attention_heads)
    head_dim = model_head_dim(cfg)
    weight = next(model.parameters())
    why = kernel_refusal(head_dim, weight.dtype, weight.device)
    if why is not None:
        raise KernelUnavailable(
            f"sparse prefill cannot run {runtime.config.model!r} ({weight.dtype}, head dim "
            f"{head_dim}): {why}. Use prefill: {{method: dense}} for it"
        )
    register()
    for mod in model.modules():
        if isinstance(getattr(mod, "layer_idx", None), int) and hasattr(
            mod, "num_key_value_groups"
        ):
            setattr(mod, _RUNTIME_ATTR, runtime)
    model.set_attn_implementation(ATTENTION_NAME)


def uninstall_sparse_prefill(model: PreTrainedModel, attn_implementation: str = "sdpa") -> None:
    """Undo `install_sparse_prefill`."""
    for mod in model.modules():
        if hasattr(mod, _RUNTIME_ATTR):
            delattr(mod, _RUNTIME_ATTR)
    model.set_attn_implementation(attn_implementation)


def _capture(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Dense SDPA that also records the layer's (post-RoPE) queries and keys.

    A sliding-window layer of a whole prompt is computed in query chunks against their windows
    only: the same attention, without the `T x T` mask that makes SDPA dense on a CPU (at 32K
    tokens a Gemma 3 layer took a minute that way).
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    sink = getattr(module, _CAPTURE_ATTR, None)
    if sink is not None:
        # Queries are recorded for the default scale 1/sqrt(D): a model's own (Gemma's
        # query_pre_attn_scalar) is folded into them, so q.k/sqrt(D) are its attention logits.
        fold = 1.0 if scaling is None else scaling * query.shape[-1] ** 0.5
        q = query.detach() if abs(fold - 1.0) < 1e-6 else query.detach() * fold
        sink[module.layer_idx] = (q, key.detach())
    window = kwargs.get("sliding_window")
    if window and query.shape[2] == key.shape[2] > 2 * window and not kwargs.get("softcap"):
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        return _windowed_attention(query, key, value, int(window), scale), None
    return sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )


def _windowed_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, window: int, scale: float
) -> torch.Tensor:
    """Causal attention where row `i` reads keys `i - window < j <= i` (transformers' sliding
    window), `[B, H, T, D]` in, `[B, T, H, D]` out, in chunks of `window` rows."""
    import torch

    b, h, t, _ = query.shape
    group = h // key.shape[1]
    out = torch.empty(b, t, h, value.shape[-1], dtype=query.dtype, device=query.device)
    for lo in range(0, t, window):
        hi = min(t, lo + window)
        k_lo = max(0, lo - window + 1)
        rows = torch.arange(lo, hi, device=query.device)[:, None]
        cols = torch.arange(k_lo, hi, device=query.device)[None, :]
        mask = (cols <= rows) & (cols > rows - window)
        k = key[:, :, k_lo:hi].repeat_interleave(group, dim=1)
        v = value[:, :, k_lo:hi].repeat_interleave(group, dim=1)
        o = torch.nn.functional.scaled_dot_product_attention(
            query[:, :, lo:hi], k, v, attn_mask=mask, scale=scale
        )
        out[:, lo:hi] = o.transpose(1, 2)
    return out


def capture_queries_keys(
    model: PreTrainedModel, input_ids: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Run a dense forward pass and return each layer's `(q [B,H,T,D], k [B,H_kv,T,D])`.

    Queries are scaled so that `q.k / sqrt(D)` are the layer's attention logits whatever scale
    the model uses.
    """
    import torch
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(_CAPTURE_NAME, _capture)
    AttentionMaskInterface.register(_CAPTURE_NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    before = model.config._attn_implementation
    sink: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    layers = [m for m in model.modules() if isinstance(getattr(m, "layer_idx", None), int)]
    for mod in layers:
        setattr(mod, _CAPTURE_ATTR, sink)
    model.set_attn_implementation(_CAPTURE_NAME)
    try:
        with torch.inference_mode():
            model(input_ids=input_ids, use_cache=False, logits_to_keep=1)
    finally:
        for mod in layers:
            delattr(mod, _CAPTURE_ATTR)
        model.set_attn_implementation(before)
    return [sink[i] for i in sorted(sink)]
