"""`ragline serve`: run a pipeline behind an OpenAI-compatible HTTP API."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from ragline.cli.app import app, state
from ragline.errors import MissingDependency, UsageError


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise UsageError(f"--host/--port: cannot listen on {host}:{port}: {err.strerror}") from None
    sock.listen(128)
    return sock


@app.command("serve")
def serve_cmd(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML; its `name` is the model name.")],
    host: Annotated[
        str,
        typer.Option("--host", help="Address to listen on (loopback unless you say otherwise)."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port; 0 picks a free one.")] = 8000,
    index: Annotated[
        Path | None, typer.Option("--index", "-i", help="Override the retrievers' index directory.")
    ] = None,
    max_concurrency: Annotated[
        int, typer.Option("--max-concurrency", min=1, help="Pipeline runs at once.")
    ] = 1,
    max_queue: Annotated[
        int, typer.Option("--max-queue", min=0, help="Requests that may wait; more get 429.")
    ] = 16,
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", min=1024, help="Larger request bodies get 413.")
    ] = 64 * 1024,
) -> None:
    """Serve PIPELINE as an OpenAI-compatible API: /v1/chat/completions, /v1/models, /health."""
    try:
        import uvicorn
    except ImportError as err:
        raise MissingDependency("uvicorn", extra="serve", purpose="ragline serve") from err
    from ragline.cli.commands import load_pipeline
    from ragline.serve import ServeLimits
    from ragline.serve.app import build_app

    pipe = load_pipeline(pipeline, index)
    limits = ServeLimits(
        max_body_bytes=max_body_bytes, max_concurrency=max_concurrency, max_queue=max_queue
    )
    app_ = build_app(pipe, limits)  # before the model loads: a missing extra fails fast
    pipe.warm_up()  # load models before accepting requests, so the first answer is not slow
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"ragline: serving model {pipe.name!r} at http://{shown}:{bound}/v1 (Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        app_,
        log_level="info" if state.verbose else "warning",
        timeout_graceful_shutdown=5,
        lifespan="off",
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        pipe.close()
