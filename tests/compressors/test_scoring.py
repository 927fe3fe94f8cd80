"""LM scoring: batched passes equal one-at-a-time passes, and cached streams equal full passes."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
import torch

from ragline.compressors.scoring import LMScorer, SurprisalStream
from ragline.errors import RaglineError
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


def test_stream_after_a_restart_reads_the_kept_head_and_tail_afresh(
    scorer: LMScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the window, the cache restarts from the prefix, the first and the latest kept tokens.

    The restarted context and the next segment are read at fresh contiguous positions, so the
    reference is one pass over exactly those tokens.
    """
    monkeypatch.setattr(scorer, "window", 160)
    prefix = _ids(6, 11)
    stream = SurprisalStream(scorer, prefix, keep_first=8)
    restarts = 0
    for step in range(12):
        seg = _ids(40, 100 + step)
        if stream._next_pos + len(seg) > scorer.window:
            tail = scorer.window // 2 - len(stream.prefix) - 8
            body = [*stream.kept[:8], *stream.kept[len(stream.kept) - tail :]]
            got = stream.score(seg)
            torch.testing.assert_close(
                got, _full_surprisal(scorer, [*prefix, *body], seg), rtol=1e-4, atol=1e-4
            )
            restarts += 1
        else:
            stream.score(seg)
        stream.keep(seg, [(i + step) % 3 != 0 for i in range(len(seg))])
    assert restarts >= 2


@pytest.mark.parametrize("bias", [False, True])
def test_bfloat16_head_projection_matches_full_log_softmax(
    scorer: LMScorer, monkeypatch: pytest.MonkeyPatch, bias: bool
) -> None:
    """The production dtype on a CPU: bf16 tiles, bf16 bias, fewer positions than a tile."""
    g = torch.Generator().manual_seed(5)
    w = scorer._head.weight
    head = torch.nn.Linear(w.shape[1], w.shape[0], bias=bias, dtype=torch.bfloat16)
    with torch.no_grad():
        head.weight.copy_(w)
        if bias:
            head.bias.copy_(torch.randn(w.shape[0], generator=g))
    monkeypatch.setattr(scorer, "_head", head)
    monkeypatch.setattr("ragline.compressors.scoring._HEAD_TILES", {"cpu": (16, 64)})
    hidden = torch.randn(11, w.shape[1], generator=g).bfloat16()
    targets = torch.randint(0, w.shape[0], (11,), generator=g)
    want = torch.log_softmax(head(hidden).float(), -1).gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(scorer.token_logprobs(hidden, targets), want, rtol=0, atol=2e-2)


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


@pytest.mark.parametrize(("softcap", "bias"), [(None, False), (3.0, False), (None, True)])
def test_tiled_vocabulary_projection_equals_full_log_softmax(
    scorer: LMScorer, monkeypatch: pytest.MonkeyPatch, softcap: float | None, bias: bool
) -> None:
    # odd tiles: 7 positions x 50 vocabulary rows, so every loop runs partial last tiles
    monkeypatch.setattr("ragline.compressors.scoring._HEAD_TILES", {"cpu": (7, 50)})
    monkeypatch.setattr(scorer, "_softcap", softcap)
    g = torch.Generator().manual_seed(7)
    if bias:
        head = torch.nn.Linear(*reversed(scorer._head.weight.shape))
        with torch.no_grad():
            head.weight.copy_(scorer._head.weight)
            head.bias.copy_(torch.randn(head.out_features, generator=g))
        monkeypatch.setattr(scorer, "_head", head)
    hidden = torch.randn(23, scorer._head.weight.shape[1], generator=g)
    targets = torch.randint(0, scorer._head.weight.shape[0], (23,), generator=g)
    assert scorer.token_logprobs(hidden[:0], targets[:0]).shape == (0,)
    logits = scorer._head(hidden).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    want = torch.log_softmax(logits, -1).gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(scorer.token_logprobs(hidden, targets), want, rtol=1e-5, atol=1e-5)


def test_surprisals_of_several_documents_equal_full_log_softmax(scorer: LMScorer) -> None:
    g = torch.Generator().manual_seed(3)
    width = scorer._head.weight.shape[1]
    pairs = [(torch.randn(n + 2, width, generator=g), _ids(n, n)) for n in [4, 0, 31, 1]]
    together = scorer.surprisals(pairs)
    assert [len(x) for x in together] == [4, 0, 31, 1]
    for got, (h, t) in zip(together, pairs, strict=True):
        logp = torch.log_softmax(scorer._head(h[: len(t)]).float(), -1)
        want = -logp.gather(1, torch.tensor(t, dtype=torch.long)[:, None]).squeeze(1)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(RaglineError, match="cannot predict"):
        scorer.surprisals([(pairs[0][0][:2], [1, 2, 3])])


def test_without_a_start_token_ranking_and_streams_equal_single_passes(
    scorer: LMScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scorer, "start_ids", [])
    docs = [_ids(n, 40 + n) for n in [6, 0, 23]]
    query = _ids(5, 77)
    ranked = scorer.rank(docs, query)
    for i, d in enumerate(docs):
        if not d:  # nothing predicts the first query token: the rest is scored
            want = _full_surprisal(scorer, query[:1], query[1:]).mean()
            assert ranked.query_nll[i] == pytest.approx(float(want), rel=1e-4, abs=1e-4)
            continue
        want = _full_surprisal(scorer, d, query).mean()
        assert ranked.query_nll[i] == pytest.approx(float(want), rel=1e-4, abs=1e-4)
        plain = scorer.doc_surprisal(ranked, i, d)
        torch.testing.assert_close(plain[1:], _full_surprisal(scorer, d[:1], d[1:]))
        assert plain[0] == plain.max()  # the unpredictable first token is kept
    segs = [_ids(9, 5), _ids(2, 6)]
    for got, seg in zip(scorer.prefixed_surprisal([], segs), segs, strict=True):
        torch.testing.assert_close(got[1:], _full_surprisal(scorer, seg[:1], seg[1:]))
    assert scorer.rank([[]], query[:1]).query_nll == [float("inf")]  # nothing to score
    stream = SurprisalStream(scorer, [])  # no start token, no prefix: an empty restart context
    seq = _ids(14, 8)
    got = stream.score(seq)
    torch.testing.assert_close(got[1:], _full_surprisal(scorer, seq[:1], seq[1:]))
    assert got[0] == got.max()
    stream.keep(seq, [True] * len(seq))
    more = _ids(6, 9)
    torch.testing.assert_close(stream.score(more), _full_surprisal(scorer, seq, more))


def test_packing_choice_refusal_and_window_fallback(tiny_lm_dir: Path) -> None:
    lm = load_causal_lm(str(tiny_lm_dir), device="cpu")
    assert LMScorer(lm)._packed is not None  # a Llama on a CPU packs by default
    assert LMScorer(lm, packed=False)._packed is None
    with pytest.raises(RaglineError, match="compile applies to packed scoring"):
        LMScorer(lm, packed=False, compile=True)
    docs, query = [_ids(n, n) for n in [30, 3, 12]], _ids(4, 1)
    want = LMScorer(lm, packed=False).rank(docs, query).query_nll
    narrow = LMScorer(lm, packed=True)
    assert narrow._packed is not None
    narrow._packed.window = 10  # rows longer than a sliding window take the padded path
    assert not narrow._packed.fits([30])
    assert narrow.rank(docs, query).query_nll == pytest.approx(want, rel=1e-5, abs=1e-5)
    lm.model.get_decoder().layers[0].self_attn.q_norm = torch.nn.Identity()
    try:
        with pytest.raises(RaglineError, match="packed scoring needs"):
            LMScorer(lm, packed=True)
        assert LMScorer(lm)._packed is None
    finally:
        del lm.model.get_decoder().layers[0].self_attn.q_norm


def test_a_head_that_is_not_a_plain_linear_runs_as_its_module(scorer: LMScorer) -> None:
    class Scaled(torch.nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * 2.0

    head = scorer._head
    wrapped = Scaled(head.in_features, head.out_features, bias=False)
    wrapped.weight = head.weight
    other = LMScorer.__new__(LMScorer)
    other.__dict__.update(scorer.__dict__, _head=wrapped, _plain_head=False)
    h = torch.randn(5, head.in_features)
    t = torch.tensor([1, 2, 3, 4, 5])
    want = torch.log_softmax(wrapped(h).float(), -1).gather(1, t[:, None]).squeeze(1)
    torch.testing.assert_close(other.token_logprobs(h, t), want, rtol=1e-5, atol=1e-5)
