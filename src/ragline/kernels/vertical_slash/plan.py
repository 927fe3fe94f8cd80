"""Turn per-head vertical columns and slash offsets into the kernel's plan, on the inputs' device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragline.errors import KernelUnavailable

if TYPE_CHECKING:
    import torch

__all__ = ["BIG", "BandedPlan", "VerticalSlashPlan", "plan_banded", "plan_vertical_slash"]

BIG = 2**31 - 1  # padding for sorted column lists: past every real column


@dataclass(frozen=True)
class VerticalSlashPlan:
    """Kernel metadata for `vertical_slash` (all int32, on the device of the indices).

    `S` head slots compute query heads `heads[s]`; `E = cdiv(T, block_n) + 1` block offsets;
    `NM = cdiv(T, block_m)` query blocks. Block offset `e` of query block `m` is key block
    `m * block_m / block_n - e`; only `e >= 1` (left of the diagonal block) is ever looked up.
    """

    seq_lens: torch.Tensor  # [B] valid tokens of each sequence (right padding)
    heads: torch.Tensor  # [S] query head of each slot
    prefix: torch.Tensor  # [B, S] keys [0, prefix) are attended by every row; multiple of block_n
    cover: torch.Tensor  # [B, S, E] int8: block offset e lies in a slash run
    run_lo: torch.Tensor  # [B, S, E] first block offset of each run (e >= 1)
    run_hi: torch.Tensor  # [B, S, E] last block offset of each run
    run_count: torch.Tensor  # [B, S]
    columns: torch.Tensor  # [B, S, C] sorted key columns >= prefix, padded with BIG
    column_count: torch.Tensor  # [B, S, NM] columns < m * block_m
    vertical: torch.Tensor  # [B, S, NV] the columns asked for (-1 pads), for the reference
    slash: torch.Tensor  # [B, S, NS] the diagonal offsets asked for (-1 pads), for the reference
    num_tokens: int
    block_m: int
    block_n: int


def _runs(cover: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maximal runs of True along the last axis, compacted to the front without a host sync."""
    import torch

    n = cover.shape[-1]
    prev = torch.nn.functional.pad(cover[..., :-1], (1, 0))
    nxt = torch.nn.functional.pad(cover[..., 1:], (0, 1))
    starts = cover & ~prev
    ends = cover & ~nxt
    pos = torch.arange(n, device=cover.device, dtype=torch.int32).expand_as(cover)

    def compact(flags: torch.Tensor) -> torch.Tensor:
        slot = torch.where(flags, flags.to(torch.int32).cumsum(-1) - 1, n)
        out = torch.zeros((*cover.shape[:-1], n + 1), dtype=torch.int32, device=cover.device)
        return out.scatter_(-1, slot.long(), pos)[..., :n]

    return compact(starts), compact(ends), starts.sum(-1, dtype=torch.int32)


def plan_vertical_slash(
    vertical: torch.Tensor,
    slash: torch.Tensor,
    seq_lens: torch.Tensor,
    num_tokens: int,
    *,
    heads: torch.Tensor | None = None,
    block_m: int = 128,
    block_n: int = 64,
) -> VerticalSlashPlan:
    """Build the plan for `vertical_slash` on the device of `vertical` (torch ops, no Python loops).

    Args:
        vertical: `[B, S, NV]` integer key columns per head slot; -1 pads.
        slash: `[B, S, NS]` integer diagonal offsets (query minus key position) per slot; -1 pads.
            Offset 0 is always added: every row attends its own block causally.
        seq_lens: `[B]` valid tokens per sequence, at most `num_tokens`.
        num_tokens: `T`, the padded sequence length of q, k, v.
        heads: `[S]` query heads the slots compute; default `arange(S)`.
        block_m, block_n: query and key tile sizes; `block_m` a multiple of `block_n`.

    A slash `d` covers, for query block `m`, every key block touched by the keys `i - d` of its
    rows: that is the block-rounded pattern the kernel computes and the reference spells out.
    """
    import torch

    if block_m % block_n or vertical.dim() != 3 or slash.dim() != 3:
        raise KernelUnavailable(
            f"plan_vertical_slash: need [B,S,NV] and [B,S,NS] indices and block_m % block_n == 0; "
            f"got {tuple(vertical.shape)}, {tuple(slash.shape)}, {block_m}/{block_n}"
        )
    dev = vertical.device
    bsz, slots = vertical.shape[:2]
    kb = block_m // block_n
    n_cover = -(-num_tokens // block_n) + 1
    n_mblocks = -(-num_tokens // block_m)
    heads = torch.arange(slots, device=dev) if heads is None else heads.to(dev)

    # slash d covers block offsets [d // bn - (kb - 1), ceil(d / bn)], kept where >= 1
    zero = torch.zeros((bsz, slots, 1), dtype=slash.dtype, device=dev)
    d = torch.cat([slash, zero], -1).long()
    valid = (d >= 0) & (d < num_tokens)
    lo = (d.div(block_n, rounding_mode="floor") - (kb - 1)).clamp(min=1)
    hi = (-((-d).div(block_n, rounding_mode="floor"))).clamp(max=n_cover - 1)
    valid &= lo <= hi
    diff = torch.zeros((bsz, slots, n_cover + 1), dtype=torch.int32, device=dev)
    one = valid.to(torch.int32)
    diff.scatter_add_(-1, torch.where(valid, lo, 0), one)
    diff.scatter_add_(-1, torch.where(valid, hi + 1, 0), -one)
    cover = diff.cumsum(-1)[..., :n_cover] > 0
    run_lo, run_hi, run_count = _runs(cover)

    # leading columns 0, 1, 2, ... become a contiguous prefix of whole key blocks
    cols = vertical.long()
    cols = torch.where((cols >= 0) & (cols < num_tokens), cols, BIG).sort(-1).values
    dup = torch.nn.functional.pad(cols[..., 1:] == cols[..., :-1], (1, 0))
    cols = torch.where(dup, BIG, cols).sort(-1).values
    ramp = torch.arange(cols.shape[-1], device=dev)
    lead = (cols == ramp).to(torch.int32).cumprod(-1).sum(-1)
    prefix = (lead // block_n * block_n).to(torch.int32)
    cols = torch.where(cols < prefix[..., None], BIG, cols).sort(-1).values
    bounds = (torch.arange(n_mblocks, device=dev) * block_m).expand(bsz, slots, n_mblocks)
    column_count = torch.searchsorted(cols, bounds.contiguous()).to(torch.int32)
    return VerticalSlashPlan(
        seq_lens=seq_lens.to(device=dev, dtype=torch.int32),
        heads=heads.to(torch.int32),
        prefix=prefix.contiguous(),
        cover=cover.to(torch.int8).contiguous(),
        run_lo=run_lo.contiguous(),
        run_hi=run_hi.contiguous(),
        run_count=run_count.contiguous(),
        columns=cols.to(torch.int32).contiguous(),
        column_count=column_count.contiguous(),
        vertical=vertical,
        slash=slash,
        num_tokens=num_tokens,
        block_m=block_m,
        block_n=block_n,
    )


def plan_banded(
    sinks: int,
    window: int,
    seq_lens: torch.Tensor,
    num_tokens: int,
    heads: torch.Tensor,
    *,
    block_m: int = 128,
    block_n: int = 64,
) -> BandedPlan:
    """Columns `0..sinks-1` and diagonals `0..window-1` on every slot (A-shape, banded vertical-slash).

    Same pattern as `plan_vertical_slash(arange(sinks), arange(window), ...)`, but no index
    tensors are built: the kernel derives each query block's ranges from the two sizes, so the
    plan costs nothing per call (the general plan is `.expand()`, for reports and tests).

    Args:
        heads: `[S]` query heads the slots compute (on the target device).
    """
    import torch

    if block_m % block_n:
        raise KernelUnavailable(
            f"plan_banded: block_m % block_n must be 0; got {block_m}/{block_n}"
        )
    dev = heads.device
    return BandedPlan(
        seq_lens=seq_lens.to(device=dev, dtype=torch.int32),
        heads=heads.to(torch.int32),
        sinks=min(max(sinks, 0), num_tokens),
        window=max(1, min(window, num_tokens)),
        num_tokens=num_tokens,
        block_m=block_m,
        block_n=block_n,
    )


@dataclass(frozen=True)
class BandedPlan:
    """Kernel metadata of a banded pattern: the first `sinks` columns and `window` nearest diagonals.

    The slashes `1..window-1` cover block offsets `1..e_max` of every query block and the
    columns `[0, sinks)` start with a prefix of whole key blocks; both follow from the sizes.
    """

    seq_lens: torch.Tensor  # [B] valid tokens of each sequence (right padding)
    heads: torch.Tensor  # [S] query head of each slot
    sinks: int
    window: int
    num_tokens: int
    block_m: int
    block_n: int

    @property
    def prefix_len(self) -> int:
        """Keys `[0, prefix_len)` every row reads: the sinks rounded down to whole key blocks."""
        return self.sinks // self.block_n * self.block_n

    @property
    def e_max(self) -> int:
        """Last block offset the slashes cover (0: none beyond the diagonal block)."""
        n_cover = -(-self.num_tokens // self.block_n) + 1
        return min(-(-(self.window - 1) // self.block_n), n_cover - 1)

    @property
    def vertical(self) -> torch.Tensor:
        """`[B, S, sinks]` the columns, as `plan_vertical_slash` takes them (for the reference)."""
        import torch

        shape = (self.seq_lens.numel(), self.heads.numel(), self.sinks)
        return torch.arange(self.sinks, device=self.heads.device).expand(shape)

    @property
    def slash(self) -> torch.Tensor:
        """`[B, S, window]` the diagonal offsets (for the reference)."""
        import torch

        shape = (self.seq_lens.numel(), self.heads.numel(), self.window)
        return torch.arange(self.window, device=self.heads.device).expand(shape)

    def expand(self) -> VerticalSlashPlan:
        """The same pattern as a general `VerticalSlashPlan`, built directly (no sort or scatter)."""
        import torch

        dev = self.heads.device
        bsz, slots = self.seq_lens.shape[0], self.heads.shape[0]
        t, bm, bn = self.num_tokens, self.block_m, self.block_n
        n_cover = -(-t // bn) + 1
        n_mblocks = -(-t // bm)
        prefix, e_max = self.prefix_len, self.e_max
        e = torch.arange(n_cover, device=dev)
        cover = ((e >= 1) & (e <= e_max)).to(torch.int8)
        rest = torch.arange(prefix, max(self.sinks, prefix + 1), device=dev, dtype=torch.int32)
        rest = torch.where(rest < self.sinks, rest, BIG)
        starts = torch.arange(n_mblocks, device=dev) * bm
        counts = (starts - prefix).clamp(0, self.sinks - prefix).to(torch.int32)
        one = torch.ones((bsz, slots, 1), dtype=torch.int32, device=dev)
        return VerticalSlashPlan(
            seq_lens=self.seq_lens,
            heads=self.heads,
            prefix=torch.full((bsz, slots), prefix, dtype=torch.int32, device=dev),
            cover=cover.expand(bsz, slots, n_cover).contiguous(),
            run_lo=one,
            run_hi=one * e_max,
            run_count=torch.full((bsz, slots), int(e_max >= 1), dtype=torch.int32, device=dev),
            columns=rest.expand(bsz, slots, rest.shape[0]).contiguous(),
            column_count=counts.expand(bsz, slots, n_mblocks).contiguous(),
            vertical=self.vertical,
            slash=self.slash,
            num_tokens=t,
            block_m=bm,
            block_n=bn,
        )
