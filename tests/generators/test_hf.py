"""generator.hf on a tiny random Llama: our decode loop equals transformers' generate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ragline.errors import RaglineError
from ragline.generators.hf import HFGenerator, decode_tokens
from ragline.models.loader import load_causal_lm
from ragline.types import Answer, Document, Query, RunState

DOCS = (
    Document(
        "a",
        "The Brassmoor Lighthouse was first lit in 1871.",
        {"title": "Brassmoor Lighthouse"},
        2.0,
    ),
    Document("b", "Brinecake is made from oats, butter and dulse.", {"title": "Brinecake"}, 1.0),
)


def state(question: str = "When was the lighthouse lit?") -> RunState:
    return RunState(Query(question), documents=DOCS)


def test_greedy_decode_matches_transformers_generate(tiny_lm_dir: Path) -> None:
    lm = load_causal_lm(str(tiny_lm_dir))
    ids = lm.tokenizer("Brassmoor Lighthouse was first lit in", return_tensors="pt").input_ids
    ours = list(decode_tokens(lm, ids, max_new_tokens=12))
    ref = lm.model.generate(
        ids, max_new_tokens=12, do_sample=False, eos_token_id=lm.tokenizer.eos_token_id
    )
    expected = ref[0, ids.shape[1] :].tolist()
    if lm.tokenizer.eos_token_id in expected:
        expected = expected[: expected.index(lm.tokenizer.eos_token_id)]
    assert ours == expected and len(ours) > 0


def test_sampling_is_reproducible_with_a_seed(tiny_lm_dir: Path) -> None:
    lm = load_causal_lm(str(tiny_lm_dir))
    ids = lm.tokenizer("The isles", return_tensors="pt").input_ids
    runs = [
        list(decode_tokens(lm, ids, max_new_tokens=10, temperature=1.0, top_p=0.9, seed=7))
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_stream_chunks_join_to_the_answer_and_trace_counts_tokens(tiny_lm_dir: Path) -> None:
    gen = HFGenerator(model=str(tiny_lm_dir), max_new_tokens=10)
    items = list(gen.stream(state()))
    final = items[-1]
    assert isinstance(final, RunState) and isinstance(final.answer, Answer)
    text = "".join(i for i in items[:-1] if isinstance(i, str))
    assert text.strip() == final.answer.text
    trace = final.trace[-1]
    assert (
        trace.stage == "generator.hf" and trace.tokens_out == final.answer.completion_tokens <= 10
    )
    assert trace.tokens_in == final.answer.prompt_tokens > 20
    assert [s.number for s in final.answer.sources] == [1, 2]
    assert (
        final.prompt is not None
        and "[1] Brassmoor Lighthouse: The Brassmoor" in final.prompt.context
    )


def test_run_equals_stream(tiny_lm_dir: Path) -> None:
    gen = HFGenerator(model=str(tiny_lm_dir), max_new_tokens=6)
    streamed = list(gen.stream(state()))[-1]
    assert isinstance(streamed, RunState)
    assert gen.run(state()).answer.text == streamed.answer.text  # type: ignore[union-attr]


def test_stop_strings_end_the_answer(tiny_lm_dir: Path) -> None:
    free = HFGenerator(model=str(tiny_lm_dir), max_new_tokens=20).run(state()).answer
    assert free is not None and len(free.text) > 3
    stop = free.text[2:4]
    cut = HFGenerator(model=str(tiny_lm_dir), max_new_tokens=20, stop=[stop]).run(state()).answer
    assert cut is not None and cut.text == free.text[: free.text.index(stop)].strip()


def test_prompt_longer_than_the_window_is_a_clear_error(tiny_lm_dir: Path) -> None:
    long_doc = Document("long", "lighthouse " * 2000)
    gen = HFGenerator(model=str(tiny_lm_dir), max_new_tokens=4)
    with pytest.raises(
        RaglineError, match=r"reads at most 1024 positions; retrieve fewer or shorter documents"
    ):
        gen.run(RunState(Query("q"), documents=(long_doc,)))


def test_without_chat_template_the_plain_prompt_is_used(tiny_lm_dir: Path) -> None:
    gen = HFGenerator(model=str(tiny_lm_dir), max_new_tokens=3, chat_template=False)
    out = gen.run(state())
    assert out.answer is not None and out.answer.prompt_tokens > 0
    assert torch.is_grad_enabled()  # inference_mode does not leak out of generation
