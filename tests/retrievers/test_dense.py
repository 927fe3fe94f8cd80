"""`retriever.dense` on a tiny corpus, and the faiss plumbing under it (placement, filtered search)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from ragline.errors import IndexCorrupt, MissingDependency, RaglineError
from ragline.retrievers.dense import DenseRetriever
from ragline.retrievers.faiss_index import choose_device, default_nlist, search_index
from ragline.retrievers.indexing import build_index
from ragline.types import Document, Query, RunState

# Paraphrased questions sharing no word with the one document they are about.
PARAPHRASES = [
    ("automobile maintenance", "cars"),
    ("puppy", "dogs"),
    ("how to cook noodles", "pasta"),
    ("storm forecast", "rain"),
    ("physician visit", "doctor"),
    ("spaceflight crew", "space"),
    ("soccer goal", "football"),
    ("classical music recital", "piano"),
]


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def ids(index: str, question: str, **params: Any) -> list[str]:
    """Ids retrieved by a fresh dense retriever over `index`, best first."""
    state = DenseRetriever(index=index, **params).run(RunState(Query(question)))
    return [d.id for d in state.documents]


@pytest.mark.parametrize(("question", "best"), PARAPHRASES)
def test_flat_finds_the_paraphrased_document_without_shared_words(
    both_index: str, corpus: tuple[Document, ...], question: str, best: str
) -> None:
    text = next(d.text for d in corpus if d.id == best)
    assert not words(question) & words(text)

    assert ids(both_index, question, top_k=3)[0] == best


def test_flat_hnsw_and_ivf_over_all_cells_rank_alike(make_index: Callable[..., str]) -> None:
    flat = DenseRetriever(index=make_index("dense"), top_k=3)
    hnsw = DenseRetriever(index=make_index("dense", index="hnsw"), top_k=3)
    ivf = DenseRetriever(index=make_index("dense", index="ivf", nlist=2), top_k=3, nprobe=2)

    for question, best in PARAPHRASES[::2]:
        want = flat.search(question)
        assert flat.index.documents[want[0][0]].id == best
        for got in (hnsw.search(question), ivf.search(question)):
            assert [i for i, _ in got] == [i for i, _ in want]
            np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def test_scores_are_descending_cosines_and_top_k_bounds_the_count(both_index: str) -> None:
    hits = DenseRetriever(index=both_index, top_k=4).search("automobile maintenance")

    scores = [s for _, s in hits]
    assert len(hits) == 4
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in scores)


def test_l2_scores_are_negated_squared_distances_best_first(
    make_index: Callable[..., str],
) -> None:
    path = make_index("dense", metric="l2")
    retriever = DenseRetriever(index=path, top_k=10)
    vectors = np.load(Path(path) / "dense" / "embeddings.npy")

    hits = retriever.search("automobile maintenance")

    query = retriever.embed_query("automobile maintenance")[0]
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)
    expected = [-float(np.sum((query - vectors[i]) ** 2)) for i, _ in hits]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    assert retriever.index.documents[hits[0][0]].id == "cars"


def test_l2_and_ip_rank_unit_vectors_alike(make_index: Callable[..., str], both_index: str) -> None:
    l2 = DenseRetriever(index=make_index("dense", metric="l2"), top_k=10).search("puppy")
    ip = DenseRetriever(index=both_index, top_k=10).search("puppy")

    assert [i for i, _ in l2] == [i for i, _ in ip]
    # |q - d|^2 = 2 - 2 q.d for unit vectors
    np.testing.assert_allclose([s for _, s in l2], [2 * s - 2 for _, s in ip], atol=1e-5)


@pytest.mark.parametrize("normalize", [True, False])
def test_normalize_setting_reaches_the_encoder_at_index_and_query_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, normalize: bool
) -> None:
    from ragline.models import loader

    calls: list[Any] = []
    real = loader.load_embedder

    class Spy:
        def __init__(self, model: Any) -> None:
            self.model = model

        def encode(self, texts: list[str], **kwargs: Any) -> Any:
            calls.append(kwargs["normalize_embeddings"])
            return self.model.encode(texts, **kwargs)

    monkeypatch.setattr(loader, "load_embedder", lambda name: Spy(real(name)))
    docs = [Document("a", "Cats purr."), Document("b", "Trains run on rails.")]
    build_index(
        docs, tmp_path / "i", methods=["dense"], dense={"normalize": normalize}, progress=False
    )
    DenseRetriever(index=str(tmp_path / "i")).search("kitten")

    assert calls == [normalize, normalize]
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["components"]["dense"]["normalize"] is normalize


def test_manifest_records_embedder_dimension_and_index_kind(
    both_index: str, make_index: Callable[..., str]
) -> None:
    def entry(path: str) -> dict[str, Any]:
        manifest = json.loads((Path(path) / "manifest.json").read_text(encoding="utf-8"))
        return manifest["components"]["dense"]

    flat = entry(both_index)
    assert flat["embedder"] == "minilm-l6" and flat["dimension"] == 384
    assert flat["index"] == "flat" and flat["metric"] == "ip" and flat["nlist"] is None
    ivf = entry(make_index("dense", index="ivf", nlist=2))
    assert ivf["index"] == "ivf" and ivf["nlist"] == 2
    assert entry(make_index("dense", index="hnsw"))["index"] == "hnsw"


def test_naming_another_embedder_than_the_index_is_corrupt_with_the_fix(both_index: str) -> None:
    with pytest.raises(IndexCorrupt, match="built with embedder 'minilm-l6'") as err:
        DenseRetriever(index=both_index, embedder="e5-small").warm_up()
    assert "`ragline index ... --embedder e5-small --overwrite`" in str(err.value)


def test_naming_the_index_embedder_is_accepted(both_index: str) -> None:
    assert ids(both_index, "puppy", embedder="minilm-l6", top_k=1) == ["dogs"]


def test_dense_over_a_bm25_only_index_names_the_method_to_build(bm25_only_index: str) -> None:
    with pytest.raises(IndexCorrupt, match="no 'dense' component") as err:
        DenseRetriever(index=bm25_only_index).warm_up()
    assert "--method dense" in str(err.value)


def test_config_round_trip_retrieves_the_same(both_index: str) -> None:
    stage = DenseRetriever(index=both_index, top_k=2, nprobe=3, device="cpu")
    again = DenseRetriever.from_config({k: v for k, v in stage.to_config().items() if k != "type"})

    assert again.to_config() == stage.to_config()
    assert again.search("storm forecast") == stage.search("storm forecast")


def fake_faiss(*, gpu_support: bool, gpus: int) -> Any:
    """A stand-in for the faiss module: GPU builds have `StandardGpuResources`."""
    fake = SimpleNamespace(get_num_gpus=lambda: gpus)
    if gpu_support:
        fake.StandardGpuResources = object
    return fake


@pytest.mark.parametrize(
    ("requested", "kind", "gpu_support", "gpus", "expected"),
    [
        ("auto", "flat", True, 1, "cuda"),
        ("auto", "ivf", True, 1, "cuda"),
        ("auto", "hnsw", True, 1, "cpu"),
        ("auto", "flat", True, 0, "cpu"),
        ("auto", "flat", False, 0, "cpu"),
        ("cpu", "flat", True, 1, "cpu"),
        ("cpu", "hnsw", False, 0, "cpu"),
        ("cuda", "flat", True, 1, "cuda"),
        ("cuda:0", "ivf", True, 2, "cuda"),
    ],
)
def test_choose_device(
    requested: str, kind: str, gpu_support: bool, gpus: int, expected: str
) -> None:
    faiss = fake_faiss(gpu_support=gpu_support, gpus=gpus)
    assert choose_device(requested, kind, faiss) == expected


@pytest.mark.parametrize(
    ("requested", "kind", "gpu_support", "gpus", "message"),
    [
        ("cuda", "flat", False, 0, "faiss has no GPU support here"),
        ("cuda", "flat", True, 0, "faiss has no GPU support here"),
        ("cuda:0", "ivf", False, 0, "faiss has no GPU support here"),
        ("cuda", "hnsw", True, 1, "faiss has no GPU hnsw index"),
        ("gpu", "flat", True, 1, "expected auto, cpu or cuda, got 'gpu'"),
        ("", "flat", False, 0, "expected auto, cpu or cuda, got ''"),
    ],
)
def test_choose_device_errors(
    requested: str, kind: str, gpu_support: bool, gpus: int, message: str
) -> None:
    with pytest.raises(RaglineError, match=re.escape(message)):
        choose_device(requested, kind, fake_faiss(gpu_support=gpu_support, gpus=gpus))


@pytest.fixture(scope="module")
def random_flat() -> tuple[Any, np.ndarray]:
    """A CPU flat inner-product index of 40 random 16-d vectors, and 3 queries."""
    import faiss

    rng = np.random.default_rng(0)
    index = faiss.IndexFlatIP(16)
    index.add(rng.standard_normal((40, 16)).astype(np.float32))
    return index, rng.standard_normal((3, 16)).astype(np.float32)


@pytest.mark.parametrize("allowed", [[3, 7, 11, 20, 21, 22, 39], [5, 6], list(range(40))])
def test_gpu_overfetch_filter_matches_the_cpu_selector(
    random_flat: tuple[Any, np.ndarray], allowed: list[int]
) -> None:
    index, queries = random_flat
    rows = np.asarray(allowed, dtype=np.int64)

    cpu_d, cpu_i = search_index(index, queries, 4, allowed=rows)
    gpu_d, gpu_i = search_index(index, queries, 4, allowed=rows, on_gpu=True)

    np.testing.assert_array_equal(gpu_i, cpu_i)
    found = cpu_i >= 0
    np.testing.assert_allclose(gpu_d[found], cpu_d[found], rtol=1e-6)
    assert np.isin(gpu_i[found], rows).all()
    assert found.sum(axis=1).tolist() == [min(4, len(allowed))] * 3


def test_gpu_path_without_filter_is_a_plain_search(random_flat: tuple[Any, np.ndarray]) -> None:
    index, queries = random_flat
    plain_d, plain_i = index.search(queries, 5)

    gpu_d, gpu_i = search_index(index, queries, 5, on_gpu=True)

    np.testing.assert_array_equal(gpu_i, plain_i)
    np.testing.assert_array_equal(gpu_d, plain_d)


def test_gpu_filter_widens_to_allowed_rows_ranked_beyond_the_first_fetch() -> None:
    import faiss

    vectors = np.zeros((200, 2), dtype=np.float32)
    vectors[:, 0] = np.linspace(1.0, 0.0, 200)  # row 199 scores lowest for the query (1, 0)
    index = faiss.IndexFlatIP(2)
    index.add(vectors)
    query = np.asarray([[1.0, 0.0]], dtype=np.float32)
    allowed = np.asarray([199], dtype=np.int64)

    _, cpu_i = search_index(index, query, 1, allowed=allowed)
    _, gpu_i = search_index(index, query, 1, allowed=allowed, on_gpu=True)

    assert cpu_i.tolist() == [[199]]
    assert gpu_i.tolist() == cpu_i.tolist()


@pytest.mark.parametrize(
    ("n", "nlist"), [(0, 1), (1, 1), (10, 1), (77, 1), (78, 2), (10_000, 256), (1_000_000, 4000)]
)
def test_default_nlist(n: int, nlist: int) -> None:
    assert default_nlist(n) == nlist


def test_missing_faiss_is_a_missing_dependency_with_the_extra(
    both_index: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)

    with pytest.raises(MissingDependency, match=re.escape("pip install 'ragline[faiss]'")):
        DenseRetriever(index=both_index).warm_up()
    with pytest.raises(MissingDependency, match="faiss-cpu"):
        build_index([Document("a", "text")], tmp_path / "i", methods=["dense"], progress=False)
    assert list(tmp_path.iterdir()) == []
