"""Triton kernel of `merge_states`: one program per BLOCK_R rows of `[B*H*T, D]`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import triton
import triton.language as tl

if TYPE_CHECKING:
    import torch

__all__ = ["_merge_states_launch"]


@triton.jit(do_not_specialize=["n_rows"])  # one variant for every number of rows
def _merge_states_kernel(
    OA,
    LA,
    OB,
    LB,
    Out,
    Lse,
    n_rows,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    i_r = tl.program_id(0)
    o_r = i_r * BLOCK_R + tl.arange(0, BLOCK_R)
    o_d = tl.arange(0, BLOCK_D)
    m_r = o_r < n_rows
    m_x = m_r[:, None] & (o_d < HEAD_DIM)[None, :]
    b_la = tl.load(LA + o_r, mask=m_r, other=float("-inf"))
    b_lb = tl.load(LB + o_r, mask=m_r, other=float("-inf"))
    b_max = tl.maximum(b_la, b_lb)
    finite = b_max > float("-inf")
    b_max = tl.where(finite, b_max, 0.0)
    w_a = tl.exp(b_la - b_max)
    w_b = tl.exp(b_lb - b_max)
    total = w_a + w_b
    b_l = tl.where(finite, b_max + tl.log(total), float("-inf"))
    total = tl.where(finite, total, 1.0)
    p_x = o_r.to(tl.int64)[:, None] * HEAD_DIM + o_d[None, :]  # B*H*T*D passes 2^31 at 1M tokens
    b_oa = tl.load(OA + p_x, mask=m_x, other=0.0).to(tl.float32)
    b_ob = tl.load(OB + p_x, mask=m_x, other=0.0).to(tl.float32)
    b_o = b_oa * (w_a / total)[:, None] + b_ob * (w_b / total)[:, None]
    tl.store(Out + p_x, b_o.to(Out.dtype.element_ty), mask=m_x)
    tl.store(Lse + o_r, b_l, mask=m_r)


def _merge_states_launch(
    out_a: torch.Tensor,
    lse_a: torch.Tensor,
    out_b: torch.Tensor,
    lse_b: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
) -> None:
    d = out_a.shape[-1]
    n_rows = lse_a.numel()
    block_r = 32
    _merge_states_kernel[(triton.cdiv(n_rows, block_r),)](
        out_a,
        lse_a,
        out_b,
        lse_b,
        out,
        lse,
        n_rows,
        HEAD_DIM=d,
        BLOCK_D=triton.next_power_of_2(d),
        BLOCK_R=block_r,
    )
