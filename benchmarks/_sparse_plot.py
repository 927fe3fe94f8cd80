"""Speedup plot of a sparse_prefill results file, with MInference's H100 figures for comparison.

python benchmarks/_sparse_plot.py benchmarks/results/sparse_prefill_h100.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# MInference 0.1.6 on the same H100 kind (../shared/anchors/minference_h100.md): x cuDNN
MINFERENCE = {
    "block_sparse/top100": {16384: 0.83, 32768: 1.45, 65536: 2.69, 131072: 5.32, 262144: 9.96},
    "vertical_slash/banded": {16384: 0.57, 32768: 1.08, 65536: 2.08, 131072: 4.27, 262144: 9.51},
    "vertical_slash/estimated_random": {
        16384: 0.43,
        32768: 0.52,
        65536: 0.53,
        131072: 0.58,
        262144: 0.73,
    },
    "a_shape/fixed": {16384: 1.15, 32768: 1.98, 65536: 3.77, 131072: 7.97, 262144: 17.4},
}

REFERENCE_BUDGETS = {"top-100 blocks of 64", "1000/6096", "128/3968"}


def plot(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(path.read_text())
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    colors = {}
    for key in MINFERENCE:
        rows = [r for r in data["results"] if f"{r.get('pattern')}/{r.get('indices')}" == key
                and "sparse_ms" in r and r.get("budget") in REFERENCE_BUDGETS]  # fmt: skip
        rows.sort(key=lambda r: r["seq_len"])
        if not rows:
            continue
        (line,) = ax.plot(
            [r["seq_len"] for r in rows],
            [r["speedup_vs_cudnn"] for r in rows],
            "o-",
            label=f"ragline {key}",
        )
        colors[key] = line.get_color()
        ref = sorted(MINFERENCE[key].items())
        ax.plot(
            [n for n, _ in ref],
            [s for _, s in ref],
            "x--",
            color=line.get_color(),
            alpha=0.6,
            label=f"MInference {key} (H100)",
        )
        ax2.plot(
            [r["seq_len"] for r in rows],
            [r["rate_vs_cudnn"] for r in rows],
            "o-",
            color=line.get_color(),
            label=key,
        )
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="sequence length", ylabel="speedup vs SDPA cuDNN (index building included)",
           title=f"Sparse prefill, Llama-3-8B attention shape, {data['device']}")  # fmt: skip
    ax.legend(fontsize=7)
    ax2.axhline(0.8, color="grey", lw=0.8, ls="--")
    ax2.axhspan(0.55, 0.6, color="grey", alpha=0.2, label="MInference kernels, H100 (0.55-0.6)")
    ax2.set(xscale="log", ylim=(0, 1.1), xlabel="sequence length", ylabel="rate on computed tiles / cuDNN dense rate",
            title="Kernel efficiency")  # fmt: skip
    ax2.legend(fontsize=7)
    fig.tight_layout()
    out = path.with_suffix(".png")
    fig.savefig(out, dpi=110)
    return out


if __name__ == "__main__":
    print(plot(Path(sys.argv[1])))
