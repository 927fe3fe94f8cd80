"""LM scoring: batched passes equal one-at-a-time passes, and cached streams equal full passes."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
import torch

from ragline.compressors.scoring import LMScorer, SurprisalStream
from ragline.models.loader import load_causal_lm


@pytest.fixture(scope="module", params=[True, False], ids=["packed", "padded"])
def scorer(tiny_lm_dir: Path, request: pytest.FixtureRequest) -> LMScorer:
    lm = load_causal_lm(str(tiny_lm_dir), device="cpu")
    return LMScorer(lm, batch_tokens=300, packed=request.param)


def _ids(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(10, 500) for _ in range(n)]


def _full_surprisal(scorer: LMScorer, prefix: list[int], seq: list[int]) -> torch.Tensor:
    """Reference: one unbatched forward with full logits."""
    model = scorer.lm.model
    ids = torch.tensor([[*scorer.start_ids, *prefix, *seq]])
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    lo = len(scorer.start_ids) + len(prefix) - 1
    return -logp[lo : lo + len(seq)].gather(1, torch.tensor(seq)[:, None]).squeeze(1)


def test_batched_rank_pass_equals_single_passes(scorer: LMScorer) -> None:
    docs = [_ids(n, s) for s, n in enumerate([5, 37, 1, 120, 64])]
    query = _ids(9, 99)
    batched = scorer.rank(docs, query)
    for i, d in enumerate(docs):
        want_q = _full_surprisal(scorer, d, query).mean()
        assert batched.query_nll[i] == pytest.approx(float(want_q), rel=1e-4, abs=1e-4)
        got = scorer.doc_surprisal(batched, i, d)
        torch.testing.assert_close(got, _full_surprisal(scorer, [], d), rtol=1e-4, atol=1e-4)


def test_prefixed_surprisal_equals_single_passes(scorer: LMScorer) -> None:
    prefix = _ids(7, 5)
    segs = [_ids(n, 10 + n) for n in [3, 50, 17]]
    for got, seg in zip(scorer.prefixed_surprisal(prefix, segs), segs, strict=True):
        torch.testing.assert_close(got, _full_surprisal(scorer, prefix, seg), rtol=1e-4, atol=1e-4)


def test_stream_keeping_everything_equals_one_full_pass(scorer: LMScorer) -> None:
    prefix, seq = _ids(6, 1), _ids(150, 2)
    stream = SurprisalStream(scorer, prefix)
    got = []
    for lo in range(0, len(seq), 40):
        seg = seq[lo : lo + 40]
        got.append(stream.score(seg))
        stream.keep(seg, [True] * len(seg))
    torch.testing.assert_close(
        torch.cat(got), _full_surprisal(scorer, prefix, seq), rtol=1e-4, atol=1e-4
    )


def test_stream_scores_after_only_the_kept_tokens(scorer: LMScorer) -> None:
    """After dropping tokens, the next segment attends to the kept ones only.

    The kept tokens' cache entries are those computed when the whole segment was read (the cache
    is sliced, not recomputed), so the reference is one pass over everything in which the second
    segment is masked from the dropped tokens.
    """
    seq1, seq2 = _ids(30, 3), _ids(20, 4)
    keep = [i % 3 != 0 for i in range(30)]
    stream = SurprisalStream(scorer, [])
    stream.score(seq1)
    stream.keep(seq1, keep)
    got = stream.score(seq2)

    s0 = len(scorer.start_ids)
    ids = torch.tensor([[*scorer.start_ids, *seq1, *seq2]])
    n = ids.shape[1]
    allowed = torch.ones(n, n, dtype=torch.bool).tril()
    dropped = [s0 + i for i, k in enumerate(keep) if not k]
    allowed[s0 + len(seq1) :, dropped] = False
    mask = torch.zeros(1, 1, n, n).masked_fill(~allowed, torch.finfo(torch.float32).min)
    with torch.inference_mode():
        logits = scorer.lm.model(input_ids=ids, attention_mask=mask).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    last_kept = s0 + max(i for i, k in enumerate(keep) if k)
    rows = torch.cat([logp[last_kept : last_kept + 1], logp[s0 + len(seq1) : n - 1]])
    want = -rows.gather(1, torch.tensor(seq2)[:, None]).squeeze(1)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def _brute_force_cost(lengths: list[int], budget: int, overhead: int) -> float:
    """Cheapest split of the length-sorted rows into contiguous batches, by enumeration."""
    rows = sorted(lengths)
    n = len(rows)
    best = float("inf")
    for mask in range(2 ** (n - 1)):
        cuts = [0, *(i + 1 for i in range(n - 1) if mask >> i & 1), n]
        cost = 0.0
        for a, b in itertools.pairwise(cuts):
            if b - a > 1 and (b - a) * rows[b - 1] > budget:
                cost = float("inf")
                break
            cost += (b - a) * rows[b - 1] + overhead
        best = min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_batches_minimise_padding_plus_overhead(scorer: LMScorer, seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.choice([rng.randrange(1, 40), rng.randrange(40, 400)]) for _ in range(9)]
    planner = LMScorer(scorer.lm, batch_tokens=600, batch_overhead=rng.choice([0, 32, 300]))
    batches = planner._batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    cost = 0.0
    for b in batches:
        width = max(lengths[i] for i in b)
        assert len(b) == 1 or len(b) * width <= planner.batch_tokens
        cost += len(b) * width + planner.batch_overhead
    assert cost == _brute_force_cost(lengths, planner.batch_tokens, planner.batch_overhead)


@pytest.mark.parametrize("softcap", [None, 3.0])
def test_tiled_vocabulary_projection_equals_full_log_softmax(
    scorer: LMScorer, monkeypatch: pytest.MonkeyPatch, softcap: float | None
) -> None:
    # odd tiles: 7 positions x 50 vocabulary rows, so every loop runs partial last tiles
    monkeypatch.setattr("ragline.compressors.scoring._HEAD_TILES", {"cpu": (7, 50)})
    monkeypatch.setattr(scorer, "_softcap", softcap)
    g = torch.Generator().manual_seed(7)
    hidden = torch.randn(23, scorer._head.weight.shape[1], generator=g)
    targets = torch.randint(0, scorer._head.weight.shape[0], (23,), generator=g)
    logits = scorer._head(hidden).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    want = torch.log_softmax(logits, -1).gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(scorer.token_logprobs(hidden, targets), want, rtol=1e-5, atol=1e-5)


def test_surprisals_of_several_documents_equal_one_at_a_time(scorer: LMScorer) -> None:
    g = torch.Generator().manual_seed(3)
    width = scorer._head.weight.shape[1]
    pairs = [(torch.randn(n + 2, width, generator=g), _ids(n, n)) for n in [4, 0, 31, 1]]
    together = scorer.surprisals(pairs)
    assert [len(x) for x in together] == [4, 0, 31, 1]
    for got, (h, t) in zip(together, pairs, strict=True):
        torch.testing.assert_close(got, scorer.surprisal(h, t), rtol=1e-5, atol=1e-5)
    assert scorer.surprisals([(pairs[1][0], [])])[0].numel() == 0
