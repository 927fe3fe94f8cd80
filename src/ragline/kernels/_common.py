"""What the kernel ops share: lazy Triton import, dispatch rule and input validation."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ragline.errors import KernelUnavailable

if TYPE_CHECKING:
    import torch

__all__ = [
    "BLOCK_SPARSE_TUNING",
    "KERNEL_HEAD_DIMS",
    "VERTICAL_SLASH_TUNING",
    "KernelTuning",
    "check_qkv",
    "dot_in_float32",
    "import_triton",
    "kernel_refusal",
    "run_sparse",
    "use_triton",
    "warp_specialized_refusal",
]


KERNEL_HEAD_DIMS = (64, 128, 256)
"""Head dims the kernels are compiled and tested for."""


#: Shared memory a head-dim-256 launch needs per program (bf16/fp16): a 128 x 256 query tile
#: (64 KB) and two stages of 64-key key and value tiles (2 x 2 x 32 KB), with some slack.
_SMEM_256 = 200 * 1024


def kernel_refusal(
    head_dim: int, dtype: torch.dtype, device: torch.device | None = None
) -> str | None:
    """Why the kernels cannot take `[..., head_dim]` inputs of `dtype` on `device`, or None.

    Without a device (or on a CPU, where the interpreter has no shared memory) only the head
    dim is checked.
    """
    import torch

    if head_dim not in KERNEL_HEAD_DIMS:
        return f"head dim must be one of {KERNEL_HEAD_DIMS}; got {head_dim}"
    if device is None or device.type != "cuda" or head_dim != 256:
        return None
    if dtype == torch.float32:
        # the float32 query tile alone is 128 KB; with key/value tiles it passes any GPU's
        return "float32 tiles of head dim 256 do not fit a GPU's shared memory; use bf16 or fp16"
    # not in every torch's stubs; without it Triton's own out-of-resources error remains
    have = getattr(torch.cuda.get_device_properties(device), "shared_memory_per_block_optin", None)
    if have is not None and have < _SMEM_256:
        return (
            f"head dim 256 needs about {_SMEM_256 // 1024} KB of shared memory per program; "
            f"this GPU offers {have // 1024} KB (Hopper has 227)"
        )
    return None


@dataclass(frozen=True)
class KernelTuning:
    """Launch choices of the sparse kernels that do not change results (benchmarks sweep them).

    Attributes:
        num_warps: warps per program (default 4 for head dim 64, else 8).
        num_stages: software-pipelining depth of the key loops (at most 2 on a GPU in float32,
            at head dim 256, and with `ahead`, whose tiles would pass shared memory in 3).
        wide: step through key ranges and listed blocks two blocks (128 keys) at a time
            (not on a GPU in float32 or at head dim 256, whose tiles would pass shared memory).
        lazy: rescale the running output only when a row's maximum grows by more than 2^8.
        pinned: take every query block's own causal block first and pin its row maxima as the
            softmax reference for all other keys: no row maximum, rescale or block-wide
            reduction per step (overrides `lazy`). 2-4 % faster for block-sparse up to 256K on
            an H200, 1-5 % slower for the vertical-slash kernel's contiguous runs. A block whose
            rows sum past 2^100 against that reference (or whose output is not finite) is redone
            with the usual rescaling, so results never depend on it beyond rounding. On real
            models the headroom is far smaller (at most 2^50 on SmolLM2 at 8K,
            `pinned_headroom_*.json`).
        ahead: block-sparse only: issue the next listed tile's scores before this tile's
            softmax, so the tensor cores and the exponentials can overlap; it holds one more
            key tile, so it runs in at most two stages. Alone it measured 2-5 % faster up to
            128K on H200s but 20 % slower at 512K-1M, where the far-flung listed blocks need
            the deeper load pipeline; with `lazy` or `pinned`, which take the rescaling off the
            path between one tile's products and the next, it is level with the plain launch
            or faster at every length (`BLOCK_SPARSE_TUNING`).
        warp_specialize: on Hopper (sm_90), head dim 128, bf16/fp16, for block-sparse plans and
            banded vertical-slash plans (A-shape): run the Gluon kernel (`_gluon.py`: a TMA
            loader warp and two consumer warpgroups that do not wait for each other) instead
            of the Triton one; the other fields then do not apply. Elsewhere, for general
            vertical-slash plans, or under the CPU interpreter, the Triton kernel runs with the
            other fields (`*_warp_specialized_refusal` says why).
    """

    num_warps: int | None = None
    num_stages: int = 3
    wide: bool = True
    lazy: bool = False
    ahead: bool = False
    pinned: bool = False
    warp_specialize: bool = False


BLOCK_SPARSE_TUNING = KernelTuning(pinned=True, ahead=True, warp_specialize=True)
"""The block-sparse op's default at head dim 128 in bf16/fp16. On Hopper the warp-specialised
Gluon kernel: on an H200 (Llama-3-8B shape, top-100 blocks, alternated rounds) 0.79-0.87 of the
plain Triton launch's time from 16K to 1M (`block_sparse_tuning_h200_ws.json`).
Elsewhere the Triton kernel with `pinned` + `ahead`: on an H200 0.91-0.99 of the plain launch's
time from 16K to 256K and 0.99-1.00 at 512K-1M (`block_sparse_tuning_h200_pinned.json`). Other
head dims keep `KernelTuning()` until measured."""


VERTICAL_SLASH_TUNING = KernelTuning(warp_specialize=True)
"""The vertical-slash op's default at head dim 128 in bf16/fp16: on Hopper, banded plans (A-shape)
take the warp-specialised Gluon kernel (`vertical_slash_tuning_h200_ws.json`); general plans,
and other GPUs, the Triton kernel with `KernelTuning()`'s fields, which no variant beat
(`vertical_slash_tuning_h200.json`, `sparse_prefill_h200_pinned_experiments.json`)."""


def warp_specialized_refusal(
    q: torch.Tensor, k: torch.Tensor, block_m: int, block_n: int
) -> str | None:
    """Why the warp-specialised Gluon kernel (`_gluon.py`) cannot take these inputs, or None."""
    import importlib.util

    import torch

    if not q.is_cuda or os.environ.get("TRITON_INTERPRET") == "1":
        return "it runs on a CUDA GPU only (Gluon has no CPU interpreter)"
    major, minor = torch.cuda.get_device_capability(q.device)
    if (major, minor) != (9, 0):
        return f"it needs an sm_90 (Hopper) GPU for TMA and warpgroup MMA; got sm_{major}{minor}"
    if q.shape[-1] != 128 or q.dtype not in (torch.bfloat16, torch.float16):
        return f"it takes head dim 128 in bf16/fp16; got {q.shape[-1]} in {q.dtype}"
    if (block_m, block_n) != (128, 64):
        return f"it takes 128-row query blocks of 64-key blocks; got {block_m}/{block_n}"
    if k.shape[0] * k.shape[1] * k.shape[2] == 0:
        return "there are no keys (its TMA descriptors need a non-empty tensor)"
    if k.shape[0] * k.shape[1] * k.shape[2] + 128 >= 2**31:
        return "its TMA row coordinates are int32: B x H_kv x T must stay below 2^31"
    if importlib.util.find_spec("triton.experimental.gluon") is None:
        return "this Triton has no Gluon (triton >= 3.6 has it)"
    return None


def import_triton() -> Any:
    """Import Triton or raise `KernelUnavailable` saying how to get it."""
    try:
        import triton
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise KernelUnavailable(
            "the sparse-attention kernels need Triton (pip install 'ragline[gpu]' on Linux)"
        ) from err
    return triton


def use_triton(t: torch.Tensor) -> bool:
    """Triton on CUDA tensors, or on CPU tensors under `TRITON_INTERPRET=1`; else the reference."""
    return t.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_lens: torch.Tensor) -> None:
    """Validate `[B, H, T, D]` queries and `[B, H_kv, T, D]` keys/values once, at the boundary."""
    import torch

    if q.dim() != 4 or k.shape != v.shape or k.dim() != 4:
        raise KernelUnavailable(
            f"expected q [B,H,T,D] and k, v [B,H_kv,T,D]; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    b, h, t, d = q.shape
    if k.shape[0] != b or k.shape[2] != t or k.shape[3] != d or h % k.shape[1]:
        raise KernelUnavailable(
            f"k, v must be [B={b}, H_kv dividing {h}, T={t}, D={d}]; got {tuple(k.shape)}"
        )
    if q.dtype not in (torch.bfloat16, torch.float16, torch.float32) or k.dtype != q.dtype:
        raise KernelUnavailable(
            f"dtype must be bf16, fp16 or fp32 for q, k, v; got {q.dtype}, {k.dtype}"
        )
    if (why := kernel_refusal(d, q.dtype, q.device)) is not None:
        raise KernelUnavailable(why)
    if q.stride(-1) != 1 or k.stride(-1) != 1 or v.stride(-1) != 1:
        raise KernelUnavailable("the last dimension of q, k and v must be contiguous")
    # key offsets within a head stay int32 in the inner loops (int64 bases and query rows)
    if max(t * k.stride(2), t * v.stride(2)) >= 2**31:
        raise KernelUnavailable(
            f"k, v of {t} tokens with token stride {k.stride(2)}/{v.stride(2)} exceed 2^31 "
            "elements per head; make them contiguous [B, H_kv, T, D] or split the sequence"
        )
    if seq_lens.shape != (b,):
        raise KernelUnavailable(f"seq_lens must be [B={b}]; got {tuple(seq_lens.shape)}")


def dot_in_float32(t: torch.Tensor) -> bool:
    """Exact float32 products: only under the CPU interpreter (its bf16 dot is wrong).

    On a GPU, float32 inputs take TF32 tensor-core products (like torch with TF32 matmuls
    allowed): the emulated IEEE float32 dot of a 128 x 128 tile kept `ptxas` busy for more than
    200 s per variant on an H100, so it is never compiled for a device.
    """
    import torch

    interp = not t.is_cuda and os.environ.get("TRITON_INTERPRET") == "1"
    return interp and t.dtype in (torch.float32, torch.bfloat16)


def run_sparse(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: Any,
    *,
    reference: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    launcher: Callable[[], Callable[..., None]],
    scale: float | None,
    out: torch.Tensor | None,
    lse: torch.Tensor | None,
    tuning: KernelTuning | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The dispatch every sparse attention op shares: validate, then its reference or its kernel.

    `launcher()` imports the op's Triton module and returns its `_<op>_launch`; it is called
    only when the kernel runs, so the reference path never imports Triton.
    """
    import torch

    check_qkv(q, k, v, plan.seq_lens)
    b, h, t, d = q.shape
    if scale is not None and not scale > 0:
        # the kernels take row maxima of raw scores, which only a positive scale preserves
        raise KernelUnavailable(f"scale must be a positive number; got {scale}")
    if out is not None and (out.shape != q.shape or out.stride(-1) != 1 or out.device != q.device):
        raise KernelUnavailable(
            f"out must be [B, H, T, D] = {tuple(q.shape)} on {q.device} with unit stride along "
            f"D; got {tuple(out.shape)} on {out.device}, strides {out.stride()}"
        )
    if lse is not None and (
        lse.shape != (b, h, t)
        or lse.dtype != torch.float32
        or lse.stride(-1) != 1
        or lse.device != q.device
    ):
        raise KernelUnavailable(
            f"lse must be float32 [B, H, T] = {(b, h, t)} on {q.device} with unit stride along "
            f"T; got {lse.dtype} {tuple(lse.shape)} on {lse.device}, strides {lse.stride()}"
        )
    if plan.num_tokens != t:
        raise KernelUnavailable(f"the plan was built for {plan.num_tokens} tokens; q has {t}")
    if not use_triton(q):
        o, l_ = reference(q, k, v, plan, scale=scale, out=out)
        if lse is None:
            return o, l_
        planned = torch.zeros(h, dtype=torch.bool, device=plan.heads.device)
        planned.index_fill_(0, plan.heads.long(), True)
        return o, lse.copy_(torch.where(planned[None, :, None], l_, lse))
    import_triton()
    launch = launcher()
    out = torch.empty_like(q) if out is None else out
    lse = torch.empty((b, h, t), dtype=torch.float32, device=q.device) if lse is None else lse
    tuning = tuning or KernelTuning()
    stages, wide = tuning.num_stages, tuning.wide
    if q.is_cuda and (q.dtype == torch.float32 or d == 256):
        # float32 tiles, and head dim 256, are twice as large: 64-key steps in two stages fit
        # shared memory (bf16 at 256: a 64 KB query tile and 2 x 2 x 32 KB of keys and values)
        stages, wide = min(stages, 2), False
    launch(
        q, k, v, plan, out, lse,
        1.0 / math.sqrt(d) if scale is None else scale,
        tuning.num_warps or (4 if d == 64 else 8), stages, wide,
        2 if tuning.pinned else int(tuning.lazy), tuning.ahead,
    )  # fmt: skip
    return out, lse
