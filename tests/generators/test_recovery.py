"""generator.hf puts back words a compressor dropped inside spans the answer copied."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ragline.generators import hf
from ragline.generators.hf import HFGenerator
from ragline.types import Document, Query, RunState

ORIGINAL = "Albert Einstein was born on 14 March 1879 in Ulm, in the Kingdom of Württemberg."
COMPRESSED = "Einstein born 14 March 1879 Ulm, Kingdom Württemberg."


@pytest.mark.parametrize("compressed", [True, False])
def test_answer_recovered_only_when_a_compressor_ran(
    tiny_lm_dir: Path, monkeypatch: pytest.MonkeyPatch, compressed: bool
) -> None:
    gen = HFGenerator(model=str(tiny_lm_dir), max_new_tokens=32, chat_template=False)
    gen.warm_up()
    assert gen._lm is not None
    tokenizer = gen._lm.tokenizer

    def scripted(lm: Any, ids: Any, **kw: Any) -> Iterator[int]:
        yield from tokenizer("He was born 14 March 1879 Ulm.", add_special_tokens=False)[
            "input_ids"
        ]

    monkeypatch.setattr(hf, "decode_tokens", scripted)
    state = RunState(
        query=Query("When was Einstein born?"),
        documents=(Document(id="e", text=COMPRESSED),),
        originals={"e": ORIGINAL} if compressed else {},
    )
    text = gen.run(state).answer.text  # type: ignore[union-attr]
    want = (
        "He was born on 14 March 1879 in Ulm." if compressed else "He was born 14 March 1879 Ulm."
    )
    assert text == want
