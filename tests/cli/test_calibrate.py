"""`ragline calibrate` on a tiny random model writes a valid per-head config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragline.attention.config import load_pattern_config
from ragline.cli import main

REPO = Path(__file__).resolve().parents[2]


def _model_with_head_dim_64(tiny_lm_dir: Path, tmp_path: Path) -> Path:
    """The tiny random Llama with head dim 64 (the kernels' smallest), same tokenizer."""
    import shutil

    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    cfg = AutoConfig.from_pretrained(tiny_lm_dir)
    cfg.head_dim = 64
    torch.manual_seed(0)
    out = tmp_path / "tiny64"
    LlamaForCausalLM(cfg).save_pretrained(out)
    for f in tiny_lm_dir.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(f, out / f.name)
    return out


def _samples(tmp_path: Path) -> Path:
    path = tmp_path / "samples.jsonl"
    docs = sorted((REPO / "examples" / "corpus").glob("*.md"))
    path.write_text("".join(json.dumps({"text": p.read_text()}) + "\n" for p in docs))
    return path


def test_calibrate_writes_a_valid_config(tiny_lm_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cfg.json"
    model = _model_with_head_dim_64(tiny_lm_dir, tmp_path)
    code = main(
        ["calibrate", str(model), "--samples", str(_samples(tmp_path)), "--out", str(out),
         "--seq-len", "300", "--budget", "0.3", "--max-samples", "2", "--device", "cpu", "--json"]
    )  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    cfg = load_pattern_config(out)
    assert cfg.model == str(model) and cfg.samples == 2 and cfg.seq_len == 300
    assert len(cfg.layers) == 2 and all(len(layer) == 4 for layer in cfg.layers)
    names = {c["pattern"] for c in report["candidates"]}
    assert "dense" in names
    for base in ("a_shape", "block_sparse", "vertical_slash"):
        assert any(n.startswith(f"{base} x") for n in names)
    for layer in cfg.layers:
        for head in layer:
            assert head.recall is not None and 0.0 < head.recall <= 1.0
    assert 0 < report["chosen_mean_recall"] <= 1.0
    # at 300 tokens the diagonal blocks alone cost more than 0.3: the cheapest sizes, flagged
    assert report["budget_met"] is False and 0.3 < report["chosen_mean_density"] <= 1.0
    assert "even the smallest patterns cost" in captured.err


def test_calibrate_rejects_bad_samples(tiny_lm_dir: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "no text"}\n')
    code = main(
        ["calibrate", str(tiny_lm_dir), "--samples", str(bad), "--out", str(tmp_path / "c.json")]
    )
    assert code == 2
    assert 'expected an object with a "text" string' in capsys.readouterr().err


class _Tok:
    """A tokenizer stand-in: words become ids 10, 11, ...; special tokens as configured."""

    def __init__(self, bos: list[int], eos: list[int]) -> None:
        self.bos, self.eos = bos, eos

    def __call__(self, text: str, add_special_tokens: bool = True) -> Any:
        ids = [10 + i for i, _ in enumerate(text.split())]
        if add_special_tokens:
            ids = self.bos + ids + self.eos
        return type("Enc", (), {"input_ids": ids})()


def test_samples_open_with_the_tokens_a_prompt_starts_with_and_nothing_after() -> None:
    from ragline.cli.calibrate import _token_samples, opening_tokens

    assert opening_tokens(_Tok([], [])) == []
    assert opening_tokens(_Tok([2], [1])) == [2]  # <bos>, never the <eos> a tokenizer appends
    samples = _token_samples(_Tok([2], [1]), ["a b c d e f g h"] * 100, 300, 2)
    assert [len(s) for s in samples] == [300, 300]
    assert all(s[0] == 2 and s.count(2) == 1 and 1 not in s for s in samples)
