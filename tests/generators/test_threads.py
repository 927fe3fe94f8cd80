"""Generation stays in inference mode even when the token stream is resumed on other threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ragline.generators.hf import decode_tokens
from ragline.models.loader import load_causal_lm


def test_every_forward_runs_in_inference_mode_across_threads(tiny_lm_dir: Path) -> None:
    lm = load_causal_lm(str(tiny_lm_dir))
    modes: list[bool] = []
    handle = lm.model.register_forward_pre_hook(
        lambda *_: modes.append(torch.is_inference_mode_enabled())
    )
    try:
        ids = lm.tokenizer("The isles", return_tensors="pt").input_ids
        stream = decode_tokens(lm, ids, max_new_tokens=6)
        with ThreadPoolExecutor(max_workers=3) as pool:
            # Each next() on a different worker, as Pipeline.astream does.
            tokens = []
            while (tok := pool.submit(next, stream, None).result()) is not None:
                tokens.append(tok)
            leaked = [pool.submit(torch.is_inference_mode_enabled).result() for _ in range(6)]
    finally:
        handle.remove()
    assert len(tokens) > 0 and modes and all(modes)
    assert not any(leaked)
