"""Plain-PyTorch specification of `merge_states`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["merge_states_ref"]


def merge_states_ref(
    out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor, lse_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`lse = log(e^a + e^b)`, `out = (e^a out_a + e^b out_b) / e^lse`; rows with no keys stay 0, -inf."""
    import torch

    lse = torch.logaddexp(lse_a.float(), lse_b.float())
    finite = torch.isfinite(lse)
    safe = torch.where(finite, lse, 0.0)
    wa = torch.where(finite, torch.exp(lse_a.float() - safe), 0.0)[..., None]
    wb = torch.where(finite, torch.exp(lse_b.float() - safe), 0.0)[..., None]
    out = wa * out_a.float() + wb * out_b.float()
    return out.to(out_a.dtype), lse
