"""The integration tests run the kernels through Triton's CPU interpreter, like tests/kernels."""

from __future__ import annotations

import os

if not os.environ.get("TRITON_INTERPRET"):
    # Must be set before triton is imported anywhere in the process.
    os.environ["TRITON_INTERPRET"] = "1"
