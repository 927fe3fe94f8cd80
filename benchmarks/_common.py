"""Shared benchmark plumbing: environment facts and the results JSON every benchmark writes."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def environment(
    packages: tuple[str, ...] = ("ragline", "torch", "transformers", "bm25s", "pydantic"),
) -> dict[str, Any]:
    """Device, date, Python and library versions, for the results file."""
    versions = {}
    for name in packages:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    if versions.get("ragline") is None:  # run from a source tree (PYTHONPATH=src)
        from ragline._version import __version__

        versions["ragline"] = __version__
    device = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        device = f"{torch.cuda.get_device_name()}; {device}"
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": device,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def summarize(samples: list[float]) -> dict[str, float]:
    """Median, p10, p90 and mean of a list of seconds."""
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "median": statistics.median(ordered),
        "p10": pick(0.1),
        "p90": pick(0.9),
        "mean": statistics.fmean(ordered),
    }


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write `benchmarks/results/<name>.json` atomically and return its path."""
    from ragline.fsutil import atomic_write_text

    path = RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    return path
