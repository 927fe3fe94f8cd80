"""`compressor.longllmlingua` and `compressor.llmlingua`: prompt compression stages with a small LM."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from ragline.compressors.budget import parse_context_budget
from ragline.compressors.engine import CompressionResult, Settings, compress
from ragline.errors import RaglineError
from ragline.pipeline.stage import ConfiguredStage, StageConfig
from ragline.types import Document, RunState, StageTrace

if TYPE_CHECKING:
    from ragline.compressors.scoring import LMScorer

__all__ = [
    "LLMLinguaCompressor",
    "LLMLinguaConfig",
    "LongLLMLinguaCompressor",
    "LongLLMLinguaConfig",
]


class LLMLinguaConfig(StageConfig):
    """Parameters of `compressor.llmlingua` (question-agnostic)."""

    model: str = "smollm2-135m-instruct"
    """The scoring LM: a packaged short name, a local directory or .gguf file, or a hub id."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """`auto`: bfloat16 on CUDA and on CPUs with native bf16 (AVX512-BF16, AMX), float32 elsewhere.

    Scoring only ranks and thresholds surprisals, so bf16 is enough; on a 2-core AVX512-BF16
    CPU it ran the compressor about 1.8x faster with the same answers kept
    (benchmarks/compression.py).
    """
    device: str = Field(default="auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    rate: float = Field(default=0.5, gt=0.0, le=1.0)
    """Fraction of the documents' tokens to keep."""
    target_tokens: int | None = Field(default=None, ge=1)
    """Tokens to keep; when set it is used instead of `rate`."""
    context_budget: str = "+100"
    """Tokens for choosing whole documents, relative to the target: '+N', '-N' or '*F'."""
    force_keep: list[str] = Field(default_factory=list)
    """Document ids always kept (still compressed at token level)."""
    iterative_size: int = Field(default=200, ge=8)
    """Tokens per segment of iterative token-level compression."""
    reorder: Literal["original", "sort", "two_stage"] = "original"
    """Output order: as given, by rank, or best at both ends (two_stage)."""
    granularity: Literal["word", "token"] = "word"
    """Drop whole words (a word goes only when all its tokens score low) or single tokens."""
    keep_numbers: bool = True
    """Never drop a word containing a digit (dates, amounts, counts are often the answer)."""
    batch_tokens: int = Field(default=8192, ge=256)
    """Tokens per scoring pass (padding included when not packed); larger needs more memory."""
    packed: bool | None = None
    """Score documents packed into one padding-free sequence (Llama, Mistral, Qwen2 models).

    None: packed on a CPU, where the decoder measured 25 % faster; padded batches on a GPU.
    """
    compile: bool = False
    """Run the packed decoder's layers through `torch.compile` (needs a C++ compiler on a CPU).

    It fuses the norms, RoPE and MLP gating into fewer passes. On a 2-core AMX CPU (SmolLM2
    bf16) the stage took 0.87-0.91 of the eager stage's time on NQ top-20 inputs, side by
    side (benchmarks/compression.py --compare-option), keeping the same answers. The price is
    10-30 s of compiling when the stage warms up (less once inductor's disk cache holds the
    graphs): worth it for many questions per process, not for one.
    """

    @field_validator("context_budget")
    @classmethod
    def _budget(cls, v: str) -> str:
        parse_context_budget(v)
        return v


class LongLLMLinguaConfig(LLMLinguaConfig):
    """Parameters of `compressor.longllmlingua` (question-aware)."""

    context_budget: str = "*1.3"
    """Tokens for choosing whole documents, relative to the target: '+N', '-N' or '*F'.

    30 % over the target (LongLLMLingua's reference uses '+100') lets one more document in at
    low rates, which token-level compression then thins; on NQ top-20 inputs it kept the answer
    more often at rate 0.25 (see benchmarks/compression.py).
    """
    dynamic_ratio: float = Field(default=0.3, ge=0.0, le=1.0)
    """Keep ratios shift by up to this much with rank: the best documents lose the least."""
    condition_compare: bool = True
    """Score a token by how much the question lowers its surprisal (contrastive perplexity)."""
    reorder: Literal["original", "sort", "two_stage"] = "sort"
    retriever_prior: float = Field(default=1.0, ge=0.0)
    """Weight of the retriever's ranking in the document ranking, when every document has a score."""
    lexical_prior: float = Field(default=1.0, ge=0.0)
    """Weight of a BM25 ranking of the documents against the question, computed among them."""


class _Compressor(ConfiguredStage[Any]):
    """Shared body of the two compressor stages."""

    question_aware: ClassVar[bool]

    def __init__(self, config: Any = None, /, **params: Any) -> None:
        super().__init__(config, **params)
        self._scorer: LMScorer | None = None

    def warm_up(self) -> None:
        """Load the scoring model (shared with other stages naming the same model)."""
        if self._scorer is None:
            from ragline.compressors.scoring import LMScorer
            from ragline.models.loader import cpu_has_native_bf16, load_causal_lm, pick_device

            cfg = self.config
            dtype = cfg.dtype
            if dtype == "auto" and pick_device(cfg.device) == "cpu" and cpu_has_native_bf16():
                dtype = "bfloat16"
            lm = load_causal_lm(cfg.model, dtype=dtype, device=cfg.device)
            self._scorer = LMScorer(
                lm, batch_tokens=cfg.batch_tokens, packed=cfg.packed, compile=cfg.compile
            )

    def settings(self) -> Settings:
        """The algorithm settings this stage's config gives."""
        cfg = self.config
        extra: dict[str, Any] = {}
        if self.question_aware:
            extra = {
                "dynamic_ratio": cfg.dynamic_ratio,
                "condition_compare": cfg.condition_compare,
                "retriever_prior": cfg.retriever_prior,
                "lexical_prior": cfg.lexical_prior,
            }
        return Settings(
            question_aware=self.question_aware,
            rate=cfg.rate,
            target_tokens=cfg.target_tokens,
            context_budget=cfg.context_budget,
            force_keep=tuple(cfg.force_keep),
            iterative_size=cfg.iterative_size,
            reorder=cfg.reorder,
            granularity=cfg.granularity,
            keep_numbers=cfg.keep_numbers,
            **extra,
        )

    def compress(self, question: str, documents: list[Document]) -> CompressionResult:
        """Compress `documents` for `question`; the lower-level entry point the stage runs."""
        if self.question_aware and not question.strip():
            raise RaglineError(
                f"{self.name}: the question is empty; LongLLMLingua ranks and compresses "
                "documents by the question (use compressor.llmlingua without one)"
            )
        self.warm_up()
        assert self._scorer is not None
        return compress(self._scorer, question, documents, self.settings())

    def run(self, state: RunState) -> RunState:
        """Replace the state's documents with their compressed versions and record what happened."""
        started = time.perf_counter()
        result = self.compress(state.query.text, list(state.documents))
        trace = StageTrace.since(
            self.name,
            started,
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            rate=round(result.rate, 4),
            requested=self.config.target_tokens or self.config.rate,
            dropped=list(result.dropped),
            seconds={k: round(v, 4) for k, v in result.seconds.items()},
            documents=[
                {
                    "id": r.id,
                    "rank": r.rank,
                    "lm_score": None if r.lm_score is None else round(r.lm_score, 4),
                    "score": None if r.fused_score is None else round(r.fused_score, 6),
                    "keep_ratio": round(r.keep_ratio, 4),
                    "tokens_in": r.tokens_in,
                    "tokens_out": r.tokens_out,
                }
                for r in result.reports
            ],
        )
        originals = {**state.originals, **result.originals}
        return state.evolve(documents=result.documents, originals=originals, trace=trace)


class LongLLMLinguaCompressor(_Compressor):
    """Question-aware prompt compression (LongLLMLingua, Jiang et al., ACL 2024).

    Ranks documents by how well each predicts the question, keeps the best within the budget,
    gives each a keep ratio by rank and drops the tokens the question makes least expected.

    Example:
        >>> c = LongLLMLinguaCompressor(rate=0.5)  # doctest: +SKIP
        >>> state = c.run(RunState(query=Query("Who wrote Hamlet?"), documents=docs))  # doctest: +SKIP
    """

    type_name = "compressor.longllmlingua"
    Config = LongLLMLinguaConfig
    question_aware = True


class LLMLinguaCompressor(_Compressor):
    """Question-agnostic prompt compression (LLMLingua, Jiang et al., EMNLP 2023).

    Example:
        >>> c = LLMLinguaCompressor(rate=0.5)  # doctest: +SKIP
    """

    type_name = "compressor.llmlingua"
    Config = LLMLinguaConfig
    question_aware = False
