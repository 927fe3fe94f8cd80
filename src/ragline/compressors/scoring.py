"""Token scoring with a causal LM: batched document ranking and per-token surprisal streams.

Every forward pass runs the decoder only; the vocabulary projection is applied to the few
positions whose next-token probabilities are needed, in chunks, so a batch never materialises
`[batch, length, vocab]` logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ragline.compressors.packed import PackedDecoder, linear_refusal, packing_refusal
from ragline.errors import RaglineError
from ragline.models.loader import cache_kwarg

if TYPE_CHECKING:
    import torch

    from ragline.models.loader import LoadedLM

__all__ = ["LMScorer", "RankPass", "SurprisalStream"]

# Vocabulary projection tiles: (positions, vocabulary rows) per product, None = the whole
# vocabulary. A CPU streams the head weight once per position tile, so it wants many
# positions; the logits that follow must stay small because each tile is read three times
# (to float, max, exp-sum). With the tile buffers reused, 512 x 2048 took 0.42-0.75 of the
# time of fresh 1024 x 4096 tiles for 831-2000 positions (SmolLM2 bf16, 2 AMX cores); fresh
# tiles spent most of theirs faulting in new pages. A GPU wants few, large launches.
_HEAD_TILES: dict[str, tuple[int, int | None]] = {"cpu": (512, 2048), "cuda": (1024, None)}


@dataclass(frozen=True)
class RankPass:
    """The result of scoring every document with the query appended after it.

    `query_nll[i]` is the mean negative log-likelihood of the query tokens given document i;
    `doc_hidden[i]` holds the decoder's last hidden states `[n_i, hidden]` that predict document
    i's tokens 0..n_i-1 from the document alone (row j predicts token j), kept so surprisals of
    the documents that survive can be computed later without another pass.
    """

    query_nll: list[float]
    doc_hidden: list[torch.Tensor]
    covered: list[int]
    """How many of each document's tokens the pass read (all, unless longer than the window)."""


class LMScorer:
    """Scores text with a loaded causal LM, packed or in padding-aware batches."""

    def __init__(
        self,
        lm: LoadedLM,
        *,
        batch_tokens: int = 8192,
        batch_overhead: int | None = None,
        packed: bool | None = None,
        compile: bool = False,
    ) -> None:
        import torch

        self.lm = lm
        self.batch_tokens = batch_tokens
        # What one more forward pass costs, in padded tokens. A CPU runs a 135M model at
        # nearly the same tokens/s from 1 to 20 rows, so padding is the waste to avoid (128
        # instead of 32 made no difference beyond run-to-run noise over 20 NQ questions); a
        # GPU pays ~30 layers of kernel launches per pass, so it prefers few wide batches.
        if batch_overhead is None:
            batch_overhead = batch_tokens // 2 if str(lm.device).startswith("cuda") else 32
        self.batch_overhead = batch_overhead
        model = lm.model
        self._decoder = model.get_decoder()
        self._head = model.get_output_embeddings()
        if self._decoder is None or self._head is None:
            raise RaglineError(
                f"compressor: model {lm.name!r} exposes no decoder/output embeddings; "
                "expected a transformers causal LM"
            )
        # The tiled projection reads the weight itself; any other head runs as its module.
        self._plain_head = linear_refusal(self._head) is None
        self._softcap = getattr(model.config, "final_logit_softcapping", None)
        # Packing wins where the projections' width is the bound (a CPU); a GPU already runs
        # padded batches as few wide launches, and its per-sequence attention loop would not.
        if packed is not False:
            refusal = packing_refusal(model)
            if packed and refusal is not None:
                raise RaglineError(
                    f"compressor: packed scoring needs a Llama-family decoder; "
                    f"{lm.name!r}: {refusal}"
                )
            packed = refusal is None and torch.device(lm.device).type == "cpu"
        if compile and not packed:
            raise RaglineError(
                f"compressor: compile applies to packed scoring, which is off for {lm.name!r} "
                f"on {lm.device} (packing runs on a CPU, for Llama-family models)"
            )
        self._packed = PackedDecoder(model, compile=compile) if packed else None
        tok = lm.tokenizer
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        self.start_ids: list[int] = [] if start is None else [int(start)]
        self.window = int(getattr(model.config, "max_position_embeddings", 0) or 2048)

    def token_logprobs(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of `targets` `[N]` under the next-token heads of `hidden` `[N, H]`."""
        import torch

        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        rows, cols = _HEAD_TILES.get(hidden.device.type, (1024, None))
        with torch.inference_mode():
            if not self._plain_head:
                for s in range(0, hidden.shape[0], rows):
                    logits = self._capped(self._head(hidden[s : s + rows]).float())
                    picked = logits.gather(1, targets[s : s + rows, None]).squeeze(1)
                    out[s : s + rows] = picked - torch.logsumexp(logits, dim=-1)
                return out
            weight, bias = self._head.weight, self._head.bias
            vocab = weight.shape[0]
            cols = min(cols or vocab, vocab)
            rows = max(1, min(rows, hidden.shape[0]))
            n_tiles = -(-vocab // cols)
            # One buffer per tile shape for the whole call (see _HEAD_TILES).
            tile = torch.empty(rows * cols, dtype=weight.dtype, device=hidden.device)
            tile32 = torch.empty(rows * cols, dtype=torch.float32, device=hidden.device)
            parts = torch.empty(rows, n_tiles, dtype=torch.float32, device=hidden.device)
            for s in range(0, hidden.shape[0], rows):
                h, t = hidden[s : s + rows], targets[s : s + rows]
                r = h.shape[0]
                for j, v in enumerate(range(0, vocab, cols)):
                    c = min(cols, vocab - v)
                    logits = tile[: r * c].view(r, c)  # contiguous, as `out=` wants
                    if bias is None:
                        torch.mm(h, weight[v : v + c].t(), out=logits)
                    else:
                        torch.addmm(bias[v : v + c], h, weight[v : v + c].t(), out=logits)
                    as32 = tile32[: r * c].view(r, c)
                    as32.copy_(logits)
                    parts[:r, j] = torch.logsumexp(self._capped(as32), dim=-1)
                lse = torch.logsumexp(parts[:r], dim=-1)
                # the target's logit, rounded to the head's dtype as the product's output is
                picked = (h.float() * weight[t].float()).sum(-1)
                if bias is not None:
                    picked = picked + bias[t].float()
                out[s : s + r] = self._capped(picked.to(weight.dtype).float()) - lse
        return out

    def _capped(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits after the model's final soft-capping (Gemma), if it has one."""
        import torch

        if not self._softcap:
            return logits
        return torch.tanh(logits / self._softcap) * self._softcap

    def surprisal(self, hidden: torch.Tensor, targets: Sequence[int]) -> torch.Tensor:
        """Surprisal (nats, float32 on the CPU) of `targets` predicted by the rows of `hidden`."""
        return self.surprisals([(hidden, targets)])[0]

    def surprisals(self, pairs: Sequence[tuple[torch.Tensor, Sequence[int]]]) -> list[torch.Tensor]:
        """`surprisal` of each `(hidden rows, targets)` pair, in one vocabulary projection.

        One projection streams the head weight once per position tile, not once per document.
        """
        import torch

        sizes = [len(t) for _, t in pairs]
        for h, tokens in pairs:
            if h.shape[0] < len(tokens):
                raise RaglineError(
                    f"compressor: {h.shape[0]} hidden rows cannot predict {len(tokens)} targets"
                )
        if not sum(sizes):
            return [torch.zeros(0) for _ in pairs]
        rows = torch.cat([h[: len(tokens)] for h, tokens in pairs if len(tokens)])
        flat = [int(x) for _, tokens in pairs for x in tokens]
        targets = torch.tensor(flat, dtype=torch.long, device=rows.device)
        return list((-self.token_logprobs(rows, targets)).cpu().split(sizes))

    def _hidden(self, rows: list[list[int]]) -> torch.Tensor:
        """Decoder last hidden states `[B, T, H]` of right-padded `rows` (padding rows are junk).

        No attention mask: in a causal LM a token only sees the tokens before it, and right
        padding comes after every real token, so the real rows' states are the same (bit-exact
        for SmolLM2 in bf16) while attention takes the plain causal path instead of an explicit
        mask (5 % less decoder time on a CPU for NQ-sized batches). Sharing the question prefix
        of `prefixed_surprisal` through a cache measured no faster: it needs the mask back.
        """
        import torch

        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, : len(r)] = torch.tensor(r, dtype=torch.long)
        with torch.inference_mode():
            out = self._decoder(input_ids=ids.to(self.lm.device), use_cache=False)
        return out.last_hidden_state

    def _states(self, rows: list[list[int]]) -> list[torch.Tensor]:
        """Decoder last hidden states `[len(row), H]` of each row, read alone.

        Packed (no padding, `batch_tokens` tokens per pass) where the model allows it, else in
        padding-aware batches.
        """
        import torch

        lengths = [len(r) for r in rows]
        hidden = self._decoder.config.hidden_size
        out: list[Any] = [torch.zeros(0, hidden, device=self.lm.device)] * len(rows)
        todo = [i for i, n in enumerate(lengths) if n]
        if self._packed is not None and self._packed.fits(lengths):
            for group in self._packs(todo, lengths):
                with torch.inference_mode():
                    states = self._packed([rows[i] for i in group])
                for i, h in zip(group, states, strict=True):
                    out[i] = h
            return out
        for batch in self._batches([lengths[i] for i in todo]):
            h = self._hidden([rows[todo[j]] for j in batch])
            for b, j in enumerate(batch):
                out[todo[j]] = h[b, : lengths[todo[j]]]
        return out

    def _packs(self, rows: Sequence[int], lengths: Sequence[int]) -> list[list[int]]:
        """`rows` in order, grouped up to `batch_tokens` tokens per pass (a longer row goes alone)."""
        groups: list[list[int]] = []
        size = 0
        for i in rows:
            if groups and size + lengths[i] <= self.batch_tokens:
                groups[-1].append(i)
                size += lengths[i]
            else:
                groups.append([i])
                size = lengths[i]
        return groups

    def _batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Group row indices into batches that minimise padded tokens plus a per-batch overhead.

        Rows are sorted by length and split where the padding a longer row would add to its
        neighbours costs more than one more forward pass (`batch_overhead` tokens) would; an
        exact dynamic programme over the sorted rows, O(n^2) for n rows.
        """
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        n = len(order)
        cost = [0.0] + [float("inf")] * n  # cost[j]: best cost of the first j sorted rows
        cut = [0] * (n + 1)
        for j in range(1, n + 1):
            width = lengths[order[j - 1]]  # the widest row of any batch ending at j
            for i in range(j - 1, -1, -1):
                if i < j - 1 and (j - i) * width > self.batch_tokens:
                    break  # one row alone may exceed the budget; it still gets a batch
                c = cost[i] + (j - i) * width + self.batch_overhead
                if c < cost[j]:
                    cost[j], cut[j] = c, i
        batches: list[list[int]] = []
        j = n
        while j > 0:
            batches.append(order[cut[j] : j])
            j = cut[j]
        return batches[::-1]

    def rank(self, docs: Sequence[Sequence[int]], query: Sequence[int]) -> RankPass:
        """Score each document by how well it predicts `query`, in batches (one pass over all).

        A document longer than the window is read from its start, as far as fits with the query.
        """

        room = max(1, self.window - len(self.start_ids) - len(query))
        rows = [[*self.start_ids, *d[:room], *query] for d in docs]
        covered = [min(len(d), room) for d in docs]
        s0 = len(self.start_ids)
        states = self._states(rows)
        # Row p predicts token p+1. Without a start token nothing predicts the first document
        # token; `doc_surprisal` gives it its segment's highest score.
        hidden = [
            h[max(s0 - 1, 0) : s0 + n - 1].clone() for h, n in zip(states, covered, strict=True)
        ]
        nll = [0.0] * len(docs)
        if query and docs:
            # One vocabulary projection for every document's query rows. Row p predicts token
            # p+1, so with no start token and an empty document the first query token has no
            # predictor; a document that predicts nothing ranks last (inf).
            pairs = [
                (h[s0 + n - 1 :], query) if s0 + n else (h, query[1:])
                for h, n in zip(states, covered, strict=True)
            ]
            nll = [float(x.mean()) if x.numel() else float("inf") for x in self.surprisals(pairs)]
        return RankPass(query_nll=nll, doc_hidden=hidden, covered=covered)

    def doc_surprisal(self, ranked: RankPass, i: int, tokens: Sequence[int]) -> torch.Tensor:
        """Surprisal of document i's first `len(tokens)` tokens, read alone, from the rank pass."""
        return self.doc_surprisals(ranked, [(i, tokens)])[0]

    def doc_surprisals(
        self, ranked: RankPass, docs: Sequence[tuple[int, Sequence[int]]]
    ) -> list[torch.Tensor]:
        """`doc_surprisal` of several `(i, tokens)` documents, in one vocabulary projection."""
        if self.start_ids:
            return self.surprisals([(ranked.doc_hidden[i], tokens) for i, tokens in docs])
        rest = self.surprisals([(ranked.doc_hidden[i], tokens[1:]) for i, tokens in docs])
        return [_prepend_max(r) for r in rest]

    def prefixed_surprisal(
        self, prefix: Sequence[int], segments: Sequence[Sequence[int]]
    ) -> list[torch.Tensor]:
        """Surprisal of each segment's tokens read after `prefix` (start token first), batched."""
        rows = [[*self.start_ids, *prefix, *s] for s in segments]
        lo = len(self.start_ids) + len(prefix) - 1
        states = self._states(rows)
        if lo < 0:  # no start token and no prefix: the first token cannot be predicted
            rest = self.surprisals([(h, s[1:]) for h, s in zip(states, segments, strict=True)])
            return [_prepend_max(r) for r in rest]
        return self.surprisals([(h[lo:], s) for h, s in zip(states, segments, strict=True)])


def _prepend_max(values: torch.Tensor) -> torch.Tensor:
    """Give an unpredictable first token the highest score of its segment, so it is kept."""
    import torch

    first = values.max().reshape(1) if values.numel() else torch.zeros(1)
    return torch.cat([first, values])


class SurprisalStream:
    """One iterative scoring stream: segments read after the compressed text kept so far.

    The key/value cache holds only kept tokens, at their original (gapped) positions. When the
    next segment would pass the model's window, the cache is rebuilt from the prefix, the first
    kept tokens and the most recent ones, with fresh contiguous positions.

    Steps run through the model's own forward with a transformers cache: one 200-token row
    gains nothing from packing (a packed cached step measured as fast over the 40 NQ inputs
    of the compression benchmark).
    """

    def __init__(self, scorer: LMScorer, prefix: Sequence[int], *, keep_first: int = 64) -> None:
        self.scorer = scorer
        self.prefix = [*scorer.start_ids, *prefix]
        self.keep_first = keep_first
        self.kept: list[int] = []
        self._cache: Any = None
        self._next_pos = 0
        self._last_hidden: torch.Tensor | None = None

    def _forward(self, ids: Sequence[int]) -> torch.Tensor:
        import torch

        if self._cache is None:
            from transformers import DynamicCache

            self._cache = DynamicCache(config=self.scorer.lm.model.config)
        dev = self.scorer.lm.device
        pos = torch.arange(self._next_pos, self._next_pos + len(ids), device=dev)[None]
        with torch.inference_mode():
            out = self.scorer._decoder(
                input_ids=torch.tensor([list(ids)], device=dev),
                position_ids=pos,
                **{cache_kwarg(self.scorer._decoder): self._cache},
                use_cache=True,
            )
        self._next_pos += len(ids)
        return out.last_hidden_state[0]

    def _restart(self, room: int) -> list[int]:
        """Empty the cache; return what to read before the next segment: prefix and kept text."""
        tail = max(0, room - len(self.prefix) - self.keep_first)
        body = (
            self.kept
            if len(self.kept) <= self.keep_first + tail
            else [
                *self.kept[: self.keep_first],
                *self.kept[len(self.kept) - tail :],
            ]
        )
        self._cache, self._next_pos, self._last_hidden = None, 0, None
        return [*self.prefix, *body]

    def score(self, segment: Sequence[int]) -> torch.Tensor:
        """Surprisal of `segment`'s tokens after the kept text; call `keep` before the next one."""
        import torch

        window = self.scorer.window
        if len(self.prefix) + self.keep_first + 2 * len(segment) > window:
            raise RaglineError(
                f"compressor: a {len(segment)}-token segment does not fit the model's "
                f"{window}-token window; lower iterative_size"
            )
        lead: list[int] = []
        if self._cache is None or self._next_pos + len(segment) > window:
            lead = self._restart(window // 2)
        # The restarted context and the segment in one pass: the states of two, up to rounding.
        h = self._forward([*lead, *segment])
        if lead:
            self._last_hidden = h[len(lead) - 1 : len(lead)]
            h = h[len(lead) :]
        self._pending = (h, len(segment))
        if self._last_hidden is None:
            return _prepend_max(self.scorer.surprisal(h[:-1], segment[1:]))
        rows = torch.cat([self._last_hidden, h[:-1]])
        return self.scorer.surprisal(rows, segment)

    def keep(self, segment: Sequence[int], mask: Sequence[bool]) -> None:
        """Drop the scored segment's unkept tokens from the cache."""
        import torch

        h, n = self._pending
        kept_pos = [j for j, k in enumerate(mask) if k]
        self.kept.extend(segment[j] for j in kept_pos)
        if kept_pos:
            self._last_hidden = h[kept_pos[-1] : kept_pos[-1] + 1]
        total = self._cache.get_seq_length()
        idx = torch.tensor(
            [*range(total - n), *(total - n + j for j in kept_pos)], device=self.scorer.lm.device
        )
        _select_cache_positions(self._cache, idx)


def _select_cache_positions(cache: Any, idx: torch.Tensor) -> None:
    """Keep only sequence positions `idx` of every layer of a transformers DynamicCache."""
    layers = getattr(cache, "layers", None)
    if layers is None:
        raise RaglineError(
            "compressor: this transformers version's cache has no per-layer tensors; "
            "expected transformers >= 4.56"
        )
    for layer in layers:
        if getattr(layer, "is_sliding", False):
            raise RaglineError(
                "compressor: models with sliding-window attention layers cannot drop tokens from "
                "their cache; use a model with full attention for compression"
            )
        layer.keys = layer.keys.index_select(2, idx)
        layer.values = layer.values.index_select(2, idx)
