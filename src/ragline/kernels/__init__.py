"""Triton kernels for sparse prefill, each beside a plain-PyTorch reference with the same signature.

Layout: every tensor inside a kernel is `[B, H, T, D]` (batch, heads, tokens, head dim); per-row
log-sum-exps are `[B, H, T]` float32 in natural-log units. Key/value tensors carry `H_kv` heads,
with `H % H_kv == 0` (grouped-query attention is read in place, never repeated in memory).
Transposes to and from a framework's layout live only in adapters (`ragline.attention`).

Ops (one folder each, see its README.md for the math):
- `block_sparse`: flash attention over a per-(batch, head, query-block) list of key blocks.
- `vertical_slash`: flash attention over key columns plus diagonal runs; A-shape is its special case.
- `merge_states`: combine `(out, lse)` pairs of attention over disjoint key sets.
- `row_topk`: positions of each row's k largest scores (the block-sparse index's top-k).

Importing this package does not import Triton; the kernels import it when first called.
"""

from ragline.kernels._common import BLOCK_SPARSE_TUNING, VERTICAL_SLASH_TUNING, KernelTuning
from ragline.kernels.block_sparse import (
    BlockSparsePlan,
    block_sparse,
    block_sparse_ref,
    block_sparse_warp_specialized_refusal,
    plan_block_sparse,
)
from ragline.kernels.merge_states import merge_states, merge_states_ref
from ragline.kernels.row_topk import row_topk, row_topk_ref
from ragline.kernels.vertical_slash import (
    BandedPlan,
    VerticalSlashPlan,
    plan_banded,
    plan_vertical_slash,
    vertical_slash,
    vertical_slash_ref,
    vertical_slash_warp_specialized_refusal,
)

__all__ = [
    "BLOCK_SPARSE_TUNING",
    "VERTICAL_SLASH_TUNING",
    "BandedPlan",
    "BlockSparsePlan",
    "KernelTuning",
    "VerticalSlashPlan",
    "block_sparse",
    "block_sparse_ref",
    "block_sparse_warp_specialized_refusal",
    "merge_states",
    "merge_states_ref",
    "plan_banded",
    "plan_block_sparse",
    "plan_vertical_slash",
    "row_topk",
    "row_topk_ref",
    "vertical_slash",
    "vertical_slash_ref",
    "vertical_slash_warp_specialized_refusal",
]
