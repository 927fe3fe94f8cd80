"""Random inputs and the tolerance check shared by the kernel parity tests."""

from __future__ import annotations

import torch

from tests.kernels.conftest import TOLERANCE


def qkv(
    b: int, h: int, h_kv: int, t: int, d: int, dtype: torch.dtype, seed: int
) -> tuple[torch.Tensor, ...]:
    """Fresh random `[B,H,T,D]` queries and `[B,H_kv,T,D]` keys/values (never zeros)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, t, d, generator=g).to(dtype)
    k = torch.randn(b, h_kv, t, d, generator=g).to(dtype)
    v = torch.randn(b, h_kv, t, d, generator=g).to(dtype)
    return q, k, v


def assert_close(out: torch.Tensor, ref: torch.Tensor, seq_lens: torch.Tensor, what: str) -> None:
    """Compare valid rows with the per-dtype tolerance; NaN never passes."""
    tol = TOLERANCE[str(ref.dtype).removeprefix("torch.")]
    for b, n in enumerate(seq_lens.tolist()):
        o, r = out[b, :, :n].float(), ref[b, :, :n].float()
        assert not torch.isnan(o).any(), f"{what}: NaN in sequence {b}"
        err = (o - r).abs().max().item() / max(r.abs().max().item(), 1e-6)
        assert err <= tol, f"{what}: relative max error {err:.2e} > {tol:.0e} in sequence {b}"
