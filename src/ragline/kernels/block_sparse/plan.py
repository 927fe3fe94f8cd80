"""The block-sparse plan: per (sequence, head slot, query block) a list of key blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragline.errors import KernelUnavailable

if TYPE_CHECKING:
    import torch

__all__ = ["BlockSparsePlan", "plan_block_sparse"]


@dataclass(frozen=True)
class BlockSparsePlan:
    """Kernel metadata for `block_sparse` (int32 on the indices' device).

    Query block `m` (rows `[m*block_m, (m+1)*block_m)`) always reads its own rows causally;
    beyond that it reads key blocks `block_idx[b, s, m, :block_count[b, s, m]]` (units of
    `block_n` keys), each strictly left of the query block: `idx < m * block_m / block_n`.
    """

    seq_lens: torch.Tensor  # [B]
    heads: torch.Tensor  # [S]
    block_idx: torch.Tensor  # [B, S, NM, K]
    block_count: torch.Tensor  # [B, S, NM]
    num_tokens: int
    block_m: int
    block_n: int


def plan_block_sparse(
    block_idx: torch.Tensor,
    seq_lens: torch.Tensor,
    num_tokens: int,
    *,
    heads: torch.Tensor | None = None,
    block_m: int = 128,
    block_n: int = 64,
    compact: bool = False,
    block_count: torch.Tensor | None = None,
) -> BlockSparsePlan:
    """Keep, per query block, the listed key blocks left of its diagonal, compacted, no host sync.

    Args:
        block_idx: `[B, S, NM, K]` key-block indices per query block; -1 pads; blocks on or right
            of the diagonal and repeats are dropped (the diagonal block is always computed).
        seq_lens: `[B]` valid tokens per sequence.
        num_tokens: padded length `T`; `NM = cdiv(T, block_m)`.
        compact: the caller guarantees each row lists distinct valid blocks first, then -1s
            (what `block_sparse_indices` returns): skip the sorting and checks.
        block_count: with `compact`, `[B, S, NM]` int32 counts of the listed blocks, known
            already (the index builder's top-k kernel writes them): `block_idx`, int32, is
            then taken as it is, since nothing past a row's count is read.
    """
    import torch

    n_m = -(-num_tokens // block_m)
    if block_idx.dim() != 4 or block_idx.shape[2] != n_m or block_m % block_n:
        raise KernelUnavailable(
            f"plan_block_sparse: block_idx must be [B, S, {n_m}, K] with block_m % block_n == 0; "
            f"got {tuple(block_idx.shape)}, {block_m}/{block_n}"
        )
    dev = block_idx.device
    slots = block_idx.shape[1]
    heads = torch.arange(slots, device=dev, dtype=torch.int32) if heads is None else heads.to(dev)
    if block_count is not None and not compact:
        raise KernelUnavailable(
            "plan_block_sparse: block_count is taken as given only with compact=True (the "
            "builder's own lists); a checked plan counts the blocks itself"
        )
    if block_count is not None:
        if (
            block_count.shape != block_idx.shape[:3]
            or block_idx.dtype != torch.int32
            or block_count.device != block_idx.device
        ):
            raise KernelUnavailable(
                f"plan_block_sparse: block_count must be [B, S, NM] = {tuple(block_idx.shape[:3])} "
                f"on {block_idx.device} beside int32 block_idx; got {tuple(block_count.shape)} on "
                f"{block_count.device}, block_idx {block_idx.dtype}"
            )
        listed, count = block_idx, block_count.to(torch.int32)
    elif compact:
        listed, count = block_idx.clamp(min=0), (block_idx >= 0).sum(-1, dtype=torch.int32)
    else:
        limit = (torch.arange(n_m, device=dev) * (block_m // block_n))[None, None, :, None]
        idx = block_idx.long()
        idx = torch.where((idx >= 0) & (idx < limit), idx, 2**31 - 1).sort(-1).values
        dup = torch.nn.functional.pad(idx[..., 1:] == idx[..., :-1], (1, 0))
        idx = torch.where(dup, 2**31 - 1, idx).sort(-1).values
        count = (idx < 2**31 - 1).sum(-1, dtype=torch.int32)
        listed = torch.where(idx < 2**31 - 1, idx, 0)
    return BlockSparsePlan(
        seq_lens=seq_lens.to(device=dev, dtype=torch.int32),
        heads=heads.to(torch.int32),
        block_idx=listed.to(torch.int32).contiguous(),
        block_count=count.contiguous(),
        num_tokens=num_tokens,
        block_m=block_m,
        block_n=block_n,
    )
