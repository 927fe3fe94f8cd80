"""Kernel tests run the Triton kernels through the interpreter on CPU (CI has no GPU)."""

from __future__ import annotations

import os

import pytest

if not os.environ.get("TRITON_INTERPRET"):
    # Must be set before triton is imported anywhere in the process.
    os.environ["TRITON_INTERPRET"] = "1"

triton = pytest.importorskip("triton")

# One tolerance table for every kernel test: max |kernel - reference| / max |reference| per dtype.
TOLERANCE = {"bfloat16": 2e-2, "float16": 4e-3, "float32": 1e-4}
