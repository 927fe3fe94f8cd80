"""faiss plumbing for dense retrieval: index construction, CPU/GPU placement, filtered search."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from ragline.errors import MissingDependency, RaglineError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["choose_device", "create_index", "default_nlist", "faiss_module", "search_index"]

IndexKind = Literal["flat", "hnsw", "ivf"]
# faiss GPU indexes cover flat and IVF; HNSW graphs stay on the CPU.
_GPU_KINDS = ("flat", "ivf")


def faiss_module() -> Any:
    """Import faiss, or explain which extra provides it."""
    try:
        import faiss
    except ImportError:
        raise MissingDependency("faiss-cpu", extra="faiss", purpose="dense retrieval") from None
    return faiss


def default_nlist(n: int) -> int:
    """IVF cells for `n` vectors: about 4·sqrt(n), but at least 39 training points per cell."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def create_index(
    kind: IndexKind, metric: str, dim: int, *, nlist: int, hnsw_m: int, ef_construction: int
) -> Any:
    """An empty faiss index of the given kind; IVF indexes still need `train`."""
    faiss = faiss_module()
    metric_id = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    spec = {"flat": "Flat", "hnsw": f"HNSW{hnsw_m}", "ivf": f"IVF{nlist},Flat"}[kind]
    index = faiss.index_factory(dim, spec, metric_id)
    if kind == "hnsw":
        faiss.downcast_index(index).hnsw.efConstruction = ef_construction
    return index


def choose_device(requested: str, kind: str, faiss: Any | None = None) -> str:
    """Where to search: "cuda" when asked for (or `auto`) and faiss-gpu sees a GPU and supports `kind`."""
    faiss = faiss or faiss_module()
    gpu_ok = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    if requested == "cpu" or (requested == "auto" and not (gpu_ok and kind in _GPU_KINDS)):
        return "cpu"
    if requested in ("auto", "cuda") or requested.startswith("cuda:"):
        if not gpu_ok:
            raise RaglineError(
                f"device {requested!r}: faiss has no GPU support here; install faiss-gpu-cu12 or use device: cpu"
            )
        if kind not in _GPU_KINDS:
            raise RaglineError(
                f"device {requested!r}: faiss has no GPU {kind} index; use flat or ivf, or device: cpu"
            )
        return "cuda"
    raise RaglineError(f"device: expected auto, cpu or cuda, got {requested!r}")


def to_gpu(index: Any, faiss: Any | None = None) -> Any:
    """Copy a CPU index to GPU 0 (the resources object stays referenced by the result)."""
    faiss = faiss or faiss_module()
    resources = faiss.StandardGpuResources()
    gpu = faiss.index_cpu_to_gpu(resources, 0, index)
    gpu._ragline_resources = resources
    return gpu


def search_index(
    index: Any,
    queries: np.ndarray,
    k: int,
    *,
    allowed: np.ndarray | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
    on_gpu: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """`(distances, ids)` of shape `[Q, k]`; ids are -1 where fewer than k vectors qualify.

    `allowed` restricts the search to those row ids (an ID selector on the CPU; on the GPU,
    which has no selectors, the search over-fetches and filters).
    """
    import numpy as np

    faiss = faiss_module()
    kind = "ivf" if hasattr(index, "nprobe") else "hnsw" if hasattr(index, "hnsw") else "flat"
    if on_gpu:
        if nprobe is not None and kind == "ivf":
            index.nprobe = nprobe
        if allowed is None:
            return index.search(queries, k)
        # GPU indexes have no ID selectors: over-fetch, and widen until every query has k
        # allowed rows or the whole index was searched, so the result equals the CPU path.
        fetch = min(index.ntotal, max(4 * k, k + 64))
        while True:
            dist, ids = index.search(queries, fetch)
            keep = np.isin(ids, allowed)
            if fetch >= index.ntotal or int(keep.sum(axis=1).min()) >= min(k, len(allowed)):
                break
            fetch = min(index.ntotal, fetch * 4)
        out_d = np.full((len(queries), k), np.nan, dtype=np.float32)
        out_i = np.full((len(queries), k), -1, dtype=np.int64)
        for q in range(len(queries)):
            sel = np.flatnonzero(keep[q])[:k]
            out_d[q, : len(sel)], out_i[q, : len(sel)] = dist[q, sel], ids[q, sel]
        return out_d, out_i
    selector = faiss.IDSelectorBatch(allowed.astype(np.int64)) if allowed is not None else None
    if kind == "ivf":
        params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe or index.nprobe)
    elif kind == "hnsw":
        params = faiss.SearchParametersHNSW(
            sel=selector, efSearch=max(ef_search or index.hnsw.efSearch, k)
        )
    else:
        params = faiss.SearchParameters(sel=selector) if selector is not None else None
    return index.search(queries, k, params=params)
