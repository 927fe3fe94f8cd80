"""vertical_slash: kernel == reference on odd sizes; reference == SDPA with the expanded mask."""

from __future__ import annotations

import pytest
import torch

from ragline.kernels import plan_vertical_slash, vertical_slash, vertical_slash_ref
from ragline.kernels.vertical_slash import vertical_slash_mask
from tests.kernels._util import assert_close, qkv

# (T, D, H, H_kv, dtype, sparsity): odd lengths, every head dim, GQA 1/4/8, empty/full/random
CASES = [
    (1, 64, 2, 2, torch.bfloat16, "random"),
    (63, 128, 4, 1, torch.float16, "random"),
    (500, 64, 8, 1, torch.bfloat16, "random"),
    (500, 128, 4, 4, torch.float16, "empty"),
    (500, 64, 4, 1, torch.float16, "full"),
    (300, 128, 8, 2, torch.bfloat16, "banded"),
    (333, 256, 4, 1, torch.float16, "random"),  # Gemma 3's head dim and GQA
]


def _indices(b: int, h: int, t: int, sparsity: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if sparsity == "empty":
        return torch.full((b, h, 1), -1), torch.full((b, h, 1), -1)
    if sparsity == "full":
        return torch.full((b, h, 1), -1), torch.arange(t).expand(b, h, t)
    if sparsity == "banded":
        return torch.arange(70).expand(b, h, 70), torch.arange(100).expand(b, h, 100)
    vert = torch.randint(0, max(t, 1), (b, h, 9), generator=g)
    vert[..., :3] = torch.arange(3)
    slash = torch.randint(0, max(t, 1), (b, h, 6), generator=g)
    return vert, slash


@pytest.mark.parametrize(("t", "d", "h", "h_kv", "dtype", "sparsity"), CASES)
def test_kernel_matches_reference(
    t: int, d: int, h: int, h_kv: int, dtype: torch.dtype, sparsity: str
) -> None:
    b = 2
    q, k, v = qkv(b, h, h_kv, t, d, dtype, seed=t + d)
    seq_lens = torch.tensor([t, max(1, t - t // 3)])
    vert, slash = _indices(b, h, t, sparsity, seed=t)
    plan = plan_vertical_slash(vert, slash, seq_lens, t)
    out = torch.full_like(q, float("nan"))
    out, lse = vertical_slash(q, k, v, plan, out=out)
    ref, ref_lse = vertical_slash_ref(q, k, v, plan)
    assert_close(out, ref, seq_lens, f"vertical_slash T={t} D={d} H={h}/{h_kv} {sparsity}")
    assert_close(lse[..., None], ref_lse[..., None], seq_lens, "lse")


def test_head_subset_leaves_other_heads() -> None:
    q, k, v = qkv(1, 4, 2, 200, 64, torch.float16, seed=1)
    vert, slash = _indices(1, 2, 200, "random", seed=2)
    plan = plan_vertical_slash(vert, slash, torch.tensor([200]), 200, heads=torch.tensor([3, 0]))
    out = torch.full_like(q, 7.0)
    vertical_slash(q, k, v, plan, out=out)
    assert (out[:, 1:3] == 7.0).all()
    ref, _ = vertical_slash_ref(q, k, v, plan)
    assert_close(out[:, [0, 3]], ref[:, [0, 3]], torch.tensor([200]), "head subset")


@pytest.mark.parametrize("sparsity", ["random", "banded", "full"])
def test_reference_equals_sdpa_with_mask(sparsity: str) -> None:
    t, h = 333, 3
    q, k, v = qkv(1, h, 1, t, 64, torch.float32, seed=5)
    vert, slash = _indices(1, h, t, sparsity, seed=6)
    plan = plan_vertical_slash(vert, slash, torch.tensor([t]), t)
    ref, _ = vertical_slash_ref(q, k, v, plan)
    mask = torch.stack([vertical_slash_mask(plan, 0, s) for s in range(h)])[None]
    kv = k.expand(1, h, t, 64)
    sdpa = torch.nn.functional.scaled_dot_product_attention(
        q, kv, v.expand(1, h, t, 64), attn_mask=mask
    )
    torch.testing.assert_close(ref, sdpa, atol=1e-5, rtol=1e-5)
    if sparsity == "full":
        dense = torch.nn.functional.scaled_dot_product_attention(
            q, kv, v.expand(1, h, t, 64), is_causal=True
        )
        torch.testing.assert_close(ref, dense, atol=1e-5, rtol=1e-5)


def test_mask_contains_every_listed_column_and_diagonal() -> None:
    t = 400
    vert, slash = _indices(1, 1, t, "random", seed=9)
    plan = plan_vertical_slash(vert, slash, torch.tensor([t]), t)
    mask = vertical_slash_mask(plan, 0, 0)
    rows = torch.arange(t)
    for d in [0, *slash[0, 0].tolist()]:
        i = rows[rows >= d]
        assert mask[i, i - d].all()
    for c in vert[0, 0].tolist():
        assert mask[c:, c].all()
    assert not mask.triu(1).any()


def test_long_sequence_odd_length() -> None:
    t = 4097
    q, k, v = qkv(1, 2, 1, t, 64, torch.bfloat16, seed=3)
    vert = torch.tensor([[[0, 1, 2, 3, 900, 2500]] * 2])
    slash = torch.tensor([[[1, 64, 1000]] * 2])
    plan = plan_vertical_slash(vert, slash, torch.tensor([t]), t)
    out, _ = vertical_slash(q, k, v, plan)
    ref, _ = vertical_slash_ref(q, k, v, plan)
    assert_close(out, ref, torch.tensor([t]), "T=4097")


@pytest.mark.parametrize(("sinks", "window", "t"), [(128, 300, 700), (100, 1, 500), (0, 64, 257)])
def test_banded_plan_equals_general_plan(sinks: int, window: int, t: int) -> None:
    from ragline.attention.patterns import a_shape_indices
    from ragline.kernels import plan_banded

    q, k, v = qkv(1, 4, 2, t, 64, torch.float16, seed=sinks + window)
    lens = torch.tensor([t])
    general = plan_vertical_slash(*a_shape_indices(1, 4, sinks, window), lens, t)
    fast = plan_banded(sinks, window, lens, t, torch.arange(4))
    for s in range(4):
        assert torch.equal(vertical_slash_mask(general, 0, s), vertical_slash_mask(fast, 0, s))
    full = fast.expand()
    assert torch.equal(general.cover, full.cover) and torch.equal(general.prefix, full.prefix)
    out_g, _ = vertical_slash(q, k, v, general)
    out_f, _ = vertical_slash(q, k, v, fast)
    torch.testing.assert_close(out_g, out_f, atol=0, rtol=0)


def test_prefix_reaching_past_a_run() -> None:
    # columns 0..191 make a 192-key prefix; slash 1 covers the block left of the diagonal, which
    # for query block 1 (rows 128..255) lies inside that prefix: no key may be read twice
    t = 400
    q, k, v = qkv(1, 2, 1, t, 64, torch.float16, seed=11)
    plan = plan_vertical_slash(
        torch.arange(192).expand(1, 2, 192), torch.tensor([[[1]] * 2]), torch.tensor([t]), t
    )
    out, lse = vertical_slash(q, k, v, plan)
    ref, ref_lse = vertical_slash_ref(q, k, v, plan)
    assert_close(out, ref, torch.tensor([t]), "prefix past run")
    assert_close(lse[..., None], ref_lse[..., None], torch.tensor([t]), "lse")


@pytest.mark.parametrize(
    ("sinks", "window", "t", "h_kv"),
    [(192, 65, 333, 1), (70, 1, 300, 2), (0, 500, 257, 4), (100, 300, 700, 1), (5, 129, 129, 2)],
)
def test_banded_kernel_matches_reference(sinks: int, window: int, t: int, h_kv: int) -> None:
    from ragline.kernels import plan_banded

    q, k, v = qkv(2, 4, h_kv, t, 64, torch.bfloat16, seed=sinks + t)
    seq_lens = torch.tensor([t, max(1, t - t // 3)])
    plan = plan_banded(sinks, window, seq_lens, t, torch.tensor([3, 1, 2]))
    out = torch.full_like(q, 7.0)
    out, lse = vertical_slash(q, k, v, plan, out=out)
    ref, ref_lse = vertical_slash_ref(q, k, v, plan)
    assert (out[:, 0] == 7.0).all()
    assert_close(out[:, 1:], ref[:, 1:], seq_lens, f"banded {sinks}/{window} T={t}")
    assert_close(lse[:, 1:, :, None], ref_lse[:, 1:, :, None], seq_lens, "lse")


def _tiles_long_way(plan, b: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Per slot of sequence `b`: prefix, run, column and diagonal tiles, block by block."""
    t, bm, bn = plan.num_tokens, plan.block_m, plan.block_n
    kb, n_m, nb = bm // bn, -(-t // bm), -(-t // 64)
    out = []
    for s in range(plan.heads.numel()):
        p, tiles = int(plan.prefix[b, s]), 0
        for m in range(n_m):
            tiles += min(m * bm, p) // bn
            for r in range(int(plan.run_count[b, s])):
                lo = max(p, (m * kb - int(plan.run_hi[b, s, r])) * bn)
                hi = (m * kb - int(plan.run_lo[b, s, r]) + 1) * bn
                tiles += max(0, hi - lo) // bn
            tiles += -(-int(plan.column_count[b, s, m]) // bn)
            tiles += -(-min(t - m * bm, bm) // bn)
        out.append(tiles * (bm // 64) * (bn // 64) / (nb * (nb + 1) // 2))
    return out


@pytest.mark.parametrize("t", [300, 1000, 2049])
def test_tile_density_on_the_device_counts_what_the_kernel_computes(t: int) -> None:
    from ragline.kernels.density import vertical_slash_tile_density

    g = torch.Generator().manual_seed(t)
    vert = torch.randint(-1, t, (2, 3, 80), generator=g)
    vert[0, 1, :70] = torch.arange(70)  # leading columns: a prefix the runs must not recount
    vert[0, 2, :40] = torch.arange(64, 104)  # columns past the first block: gathered, no prefix
    slash = torch.randint(-1, t, (2, 3, 30), generator=g)
    plan = plan_vertical_slash(vert, slash, torch.tensor([t, t]), t)
    assert int(plan.prefix[0, 1]) == 64
    got = vertical_slash_tile_density(plan)
    for b in range(2):  # each sequence of the batch on its own indices
        assert got[b].tolist() == pytest.approx(_tiles_long_way(plan, b), abs=1e-12)


def test_warp_specialized_kernel_takes_banded_plans_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """General plans gather single columns, which the Gluon kernel's TMA loader cannot: they
    name why and take the Triton kernel; banded plans pass the shared checks."""
    from types import SimpleNamespace

    from ragline.kernels.vertical_slash import (
        plan_banded,
    )
    from ragline.kernels.vertical_slash import (
        vertical_slash_warp_specialized_refusal as refusal,
    )

    t = 300
    q, k, _ = qkv(1, 2, 1, t, 128, torch.bfloat16, seed=5)
    banded = plan_banded(128, 200, torch.tensor([t]), t, torch.arange(2))
    general = plan_vertical_slash(
        torch.tensor([[[0, 5]] * 2]), torch.tensor([[[1]] * 2]), torch.tensor([t]), t
    )
    assert "CUDA GPU only" in str(refusal(q, k, banded))
    assert "banded plans (A-shape) only" in str(refusal(q, k, general))
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (9, 0))
    fake = SimpleNamespace(
        is_cuda=True, device="cuda:0", shape=(1, 2, t, 128), dtype=torch.bfloat16
    )
    assert refusal(fake, fake, banded) is None
    assert "banded plans (A-shape) only" in str(refusal(fake, fake, general))
