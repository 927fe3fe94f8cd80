"""The Starlette app behind `ragline serve`: chat completions (plain and SSE), models, health."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from ragline.errors import MissingDependency, RaglineError, UsageError
from ragline.pipeline import Pipeline
from ragline.serve.protocol import (
    ChatRequest,
    ServeLimits,
    chunk,
    completion,
    error_body,
    models_list,
    new_id,
    parse_request,
)
from ragline.types import Answer, Query

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["build_app"]

log = logging.getLogger("ragline.serve")


class _TooLarge(Exception):
    pass


class _Slots:
    """At most `max_concurrency` runs at once and `max_queue` waiting; beyond that, refuse."""

    def __init__(self, limits: ServeLimits) -> None:
        self.limits = limits
        self.active = 0
        self.waiting = 0
        self._sem = asyncio.Semaphore(limits.max_concurrency)

    def full(self) -> bool:
        return self.active + self.waiting >= self.limits.max_concurrency + self.limits.max_queue

    async def acquire(self) -> None:
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        self._sem.release()


def _json(status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse(data, status_code=status, headers=headers)


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    # Chunked bodies declare no length, so the limit is also enforced while reading.
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


def _stream_in_thread(
    pipeline: Pipeline,
    query: Query,
    loop: asyncio.AbstractEventLoop,
    put: Callable[[object], None],
    cancelled: threading.Event,
) -> None:
    """Run `pipeline.stream` on a worker thread, handing items to the loop; stop early when cancelled."""
    stream = pipeline.stream(query)
    try:
        for item in stream:
            if cancelled.is_set():
                break  # the client left: stop generating instead of finishing unheard
            loop.call_soon_threadsafe(put, item)
    except Exception as err:  # reported to the client as an SSE error event
        loop.call_soon_threadsafe(put, err)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
        loop.call_soon_threadsafe(put, None)


def _run_error(err: Exception) -> tuple[int, dict[str, Any]]:
    if isinstance(err, UsageError):
        return 400, error_body(str(err), "invalid_request_error")
    if isinstance(err, RaglineError):
        return 500, error_body(f"{type(err).__name__}: {err}", "server_error")
    log.error("pipeline failed", exc_info=err)
    return 500, error_body(f"internal error: {type(err).__name__}", "server_error")


class _Handlers:
    """The endpoints, sharing one pipeline and one set of slots."""

    def __init__(self, pipeline: Pipeline, limits: ServeLimits) -> None:
        self.pipeline = pipeline
        self.limits = limits
        self.created = int(time.time())
        self._slots: _Slots | None = None

    @property
    def slots(self) -> _Slots:
        # Made on first use, inside the serving loop, where its semaphore belongs.
        if self._slots is None:
            self._slots = _Slots(self.limits)
        return self._slots

    async def health(self, request: Request) -> Response:
        """`GET /health`: liveness and load."""
        s = self.slots
        body = {
            "status": "ok",
            "model": self.pipeline.name,
            "active": s.active,
            "waiting": s.waiting,
        }
        return _json(200, body)

    async def models(self, request: Request) -> Response:
        """`GET /v1/models`: the pipeline, by name."""
        return _json(200, models_list(self.pipeline.name, self.created))

    async def _validated(self, request: Request) -> ChatRequest | Response:
        try:
            body = await _read_body(request, self.limits.max_body_bytes)
        except _TooLarge:
            msg = f"the request body exceeds {self.limits.max_body_bytes} bytes"
            return _json(413, error_body(msg, "invalid_request_error", "request_too_large"))
        try:
            req = parse_request(body)
        except ValueError as err:
            return _json(400, error_body(str(err), "invalid_request_error"))
        if req.model != self.pipeline.name:
            msg = f"model {req.model!r} is not served here; this server runs {self.pipeline.name!r}"
            return _json(404, error_body(msg, "invalid_request_error", "model_not_found"))
        return req

    async def chat(self, request: Request) -> Response:
        """`POST /v1/chat/completions`: answer the last user message, whole or as SSE."""
        from starlette.responses import StreamingResponse

        req = await self._validated(request)
        if not isinstance(req, ChatRequest):
            return req
        s = self.slots
        if s.full():
            msg = f"{s.active} requests running and {s.waiting} waiting; retry shortly"
            error = error_body(msg, "rate_limit_error", "server_busy")
            return _json(429, error, headers={"Retry-After": "1"})
        await s.acquire()
        if req.stream:
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            body = self._start_stream(req, s)
            return StreamingResponse(body, media_type="text/event-stream", headers=headers)
        try:
            answer = await asyncio.to_thread(self.pipeline.run, req.query())
        except Exception as err:
            return _json(*_run_error(err))
        finally:
            s.release()
        return _json(200, completion(answer, req.model, new_id()))

    def _start_stream(self, req: ChatRequest, s: _Slots) -> AsyncIterator[str]:
        """Start the pipeline on a worker thread now and return the SSE body that relays it."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancelled = threading.Event()
        worker = loop.run_in_executor(
            None, _stream_in_thread, self.pipeline, req.query(), loop, queue.put_nowait, cancelled
        )
        # The slot is freed when the thread ends, not when the client leaves: a disconnected
        # stream holds the model until its current token is done. Starting the thread here, not
        # inside the body, frees the slot even if the body is never iterated.
        worker.add_done_callback(lambda _: s.release())
        return self._relay(req, queue, cancelled)

    @staticmethod
    async def _relay(
        req: ChatRequest, queue: asyncio.Queue[object], cancelled: threading.Event
    ) -> AsyncIterator[str]:
        cid = new_id()
        usage = req.stream_options is not None and req.stream_options.include_usage
        try:
            yield _sse(chunk(req.model, cid, content="", role=True))
            while (item := await queue.get()) is not None:
                if isinstance(item, Answer):
                    yield _sse(chunk(req.model, cid, answer=item))
                    if usage:
                        yield _sse(chunk(req.model, cid, usage_only=item))
                elif isinstance(item, Exception):
                    yield _sse(_run_error(item)[1])
                else:
                    yield _sse(chunk(req.model, cid, content=str(item)))
            yield "data: [DONE]\n\n"
        finally:
            cancelled.set()  # the client left (or the stream ended): stop the worker early


def build_app(pipeline: Pipeline, limits: ServeLimits | None = None) -> Starlette:
    """An ASGI app serving `pipeline` as the model named after it, OpenAI-style.

    Example:
        >>> app = build_app(Pipeline.from_yaml("pipe.yaml"), ServeLimits(max_concurrency=2))  # doctest: +SKIP
    """
    try:
        from starlette.applications import Starlette
        from starlette.routing import Route
    except ImportError as err:
        raise MissingDependency("starlette", extra="serve", purpose="ragline serve") from err
    handlers = _Handlers(pipeline, limits or ServeLimits())
    routes = [
        Route("/v1/chat/completions", handlers.chat, methods=["POST"]),
        Route("/v1/models", handlers.models, methods=["GET"]),
        Route("/health", handlers.health, methods=["GET"]),
    ]
    return Starlette(routes=routes)
