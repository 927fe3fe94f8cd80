"""A tiny OpenAI-like HTTP server on loopback whose answers a test scripts, to exercise retries and errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Reply", "ScriptedServer", "scripted_server", "sse_reply", "text_reply"]


@dataclass
class Reply:
    """One scripted answer: status, headers and body bytes."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def text_reply(text: str, *, prompt_tokens: int = 11, completion_tokens: int = 5) -> Reply:
    """A non-streamed chat completion answering `text`."""
    body = {
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }
    return Reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


def sse_reply(pieces: list[str], *, usage: bool = True) -> Reply:
    """A streamed chat completion sending `pieces` one event each, then usage and [DONE]."""
    events = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    events += [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
    if usage:
        events.append(
            {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": len(pieces)}}
        )
    lines = [": keep-alive\n\n", *(f"data: {json.dumps(e)}\n\n" for e in events)]
    body = "".join(lines) + "data: [DONE]\n\n"
    return Reply(200, body.encode(), {"Content-Type": "text/event-stream"})


class ScriptedServer:
    """Serves the scripted replies in order (the last one repeats) and records every request."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                reply = server.replies.pop(0) if len(server.replies) > 1 else server.replies[0]
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@contextmanager
def scripted_server(replies: list[Reply]) -> Iterator[ScriptedServer]:
    """Run a `ScriptedServer` on a background thread for the `with` block."""
    server = ScriptedServer(replies)
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
