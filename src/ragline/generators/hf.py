"""`generator.hf`: answer with a transformers causal LM, token by token, with streaming."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ragline.attention.prefill import PrefillConfig
from ragline.errors import RaglineError
from ragline.generators.answer import final_state, finish_answer, prompt_of
from ragline.generators.detokenize import StreamingDetokenizer
from ragline.models.loader import cache_kwarg
from ragline.pipeline.stage import ConfiguredStage, StageConfig
from ragline.types import Prompt, RunState

if TYPE_CHECKING:
    import torch

    from ragline.models.loader import LoadedLM

__all__ = ["HFGenerator", "HFGeneratorConfig", "decode_tokens"]


class HFGeneratorConfig(StageConfig):
    """Parameters of `generator.hf`."""

    model: str = "smollm2-135m-instruct"
    """A packaged short name, a local directory or .gguf file, or a hub id (needs a network)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """auto: bfloat16 on CUDA, float32 on CPU."""
    device: str = Field(default="auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    """auto, cpu, cuda, cuda:1, mps."""
    max_new_tokens: int = Field(default=96, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    """0 decodes greedily; above 0 samples."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    """Seed for sampling; ignored when greedy."""
    chat_template: bool = True
    """Use the tokenizer's chat template when it has one."""
    stop: list[str] = Field(default_factory=list)
    """Stop generating when the answer contains any of these strings (not included in the answer)."""
    prefill: PrefillConfig = Field(default_factory=PrefillConfig)
    """Prefill attention: `{method: dense | minference | a_shape | vertical_slash | block_sparse,
    config: auto | PATH, min_len}`; long prompts only, decoding stays dense."""


def _pick_next(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> int:
    import torch

    if temperature == 0.0:
        return int(logits.argmax(-1))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < top_p
        probs = torch.zeros_like(probs).scatter(-1, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


def decode_tokens(
    lm: LoadedLM,
    input_ids: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
) -> Iterator[int]:
    """Yield generated token ids one at a time until EOS or `max_new_tokens`.

    Args:
        lm: the loaded model and tokenizer.
        input_ids: `[1, T]` int64 prompt ids on the model's device.
    """
    import torch
    from transformers import DynamicCache

    model = lm.model
    eos = model.generation_config.eos_token_id
    stop = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if lm.tokenizer.eos_token_id is not None:
        stop.add(lm.tokenizer.eos_token_id)
    generator = None
    if temperature > 0.0 and seed is not None:
        generator = torch.Generator(device=input_ids.device).manual_seed(seed)
    # inference_mode wraps each step, not the whole generator: a consumer may resume it on
    # another thread (Pipeline.astream), where a context entered here would not apply.
    with torch.inference_mode():
        cache = {cache_kwarg(model): DynamicCache(config=model.config)}
        out = model(input_ids=input_ids, **cache, use_cache=True, logits_to_keep=1)
        token = _pick_next(out.logits[0, -1], temperature, top_p, generator)
    for _ in range(max_new_tokens):
        if token in stop:
            return
        yield token
        with torch.inference_mode():
            step = torch.tensor([[token]], device=input_ids.device)
            out = model(input_ids=step, **cache, use_cache=True)
            token = _pick_next(out.logits[0, -1], temperature, top_p, generator)


class HFGenerator(ConfiguredStage[HFGeneratorConfig]):
    """Generate the answer with a Hugging Face causal LM (dense attention), then attribute citations.

    The model loads once per process in `warm_up()`. Without a `prompt.*` stage before it, the
    generator numbers the documents itself with the default `prompt.numbered` settings.

    Example:
        >>> gen = HFGenerator(model="smollm2-135m-instruct", max_new_tokens=32)  # doctest: +SKIP
    """

    type_name = "generator.hf"
    Config = HFGeneratorConfig

    def __init__(self, config: HFGeneratorConfig | None = None, /, **params: Any) -> None:
        super().__init__(config, **params)
        self._lm: LoadedLM | None = None

    def warm_up(self) -> None:
        """Load the model and tokenizer (shared with other stages naming the same model)."""
        if self._lm is None:
            from ragline.models.loader import load_causal_lm

            lm = load_causal_lm(
                self.config.model, dtype=self.config.dtype, device=self.config.device
            )
            if self.config.prefill.method != "dense":
                from ragline.attention.prefill import install_prefill

                install_prefill(lm.model, self.config.model, self.config.prefill)
            self._lm = lm

    def _encode(self, prompt: Prompt) -> torch.Tensor:
        assert self._lm is not None
        tok = self._lm.tokenizer
        if self.config.chat_template and tok.chat_template:
            text = tok.apply_chat_template(
                prompt.messages(), tokenize=False, add_generation_prompt=True
            )
            ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
        else:
            ids = tok(prompt.plain(), return_tensors="pt").input_ids
        window = getattr(self._lm.model.config, "max_position_embeddings", None)
        if window is not None and ids.shape[1] + self.config.max_new_tokens > window:
            raise RaglineError(
                f"generator.hf: the prompt has {ids.shape[1]} tokens and max_new_tokens is {self.config.max_new_tokens}, "
                f"but {self.config.model} reads at most {window} positions; retrieve fewer or shorter documents (top_k, "
                "a compressor), shorten the question, or lower max_new_tokens"
            )
        return ids.to(self._lm.device)

    def stream(self, state: RunState) -> Iterator[str | RunState]:
        """Yield text chunks as tokens are generated, then the final state with its `Answer`."""
        self.warm_up()
        assert self._lm is not None
        started = time.perf_counter()
        prompt = prompt_of(state)
        ids = self._encode(prompt)
        prefill_done: float | None = None
        cfg = self.config
        detok = StreamingDetokenizer(self._lm.tokenizer, cfg.stop)
        for token in decode_tokens(
            self._lm,
            ids,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            seed=cfg.seed,
        ):
            prefill_done = prefill_done or time.perf_counter()
            if chunk := detok.push(token):
                yield chunk
            if detok.stopped:
                break
        if chunk := detok.finish():
            yield chunk
        yield finish_answer(
            state,
            prompt,
            detok.text,
            stage=self.name,
            started=started,
            first_token_at=prefill_done,
            prompt_tokens=int(ids.shape[1]),
            completion_tokens=len(detok.tokens),
            model=cfg.model,
        )

    def run(self, state: RunState) -> RunState:
        """Generate the whole answer."""
        return final_state(self.stream(state))
