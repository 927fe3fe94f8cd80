"""The OpenAI chat-completions wire format `ragline serve` speaks: request validation and responses."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ragline.types import Answer, Query

__all__ = [
    "ChatRequest",
    "ServeLimits",
    "chunk",
    "completion",
    "error_body",
    "models_list",
    "parse_request",
]


class ServeLimits(BaseModel):
    """What one server accepts: body size, requests running at once, and requests waiting."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    """Larger request bodies get 413."""
    max_concurrency: int = Field(default=1, ge=1)
    """Pipeline runs at once; a CPU generator gains nothing from more."""
    max_queue: int = Field(default=16, ge=0)
    """Requests that may wait for a slot; beyond that, 429 with `Retry-After`."""


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """One message; the content is a string or a list of parts, of which text parts are read."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer", "function"]
    content: str | list[_TextPart] | None = None

    def text(self) -> str:
        """The message's text (text parts joined by newlines)."""
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.type == "text" and p.text)
        return self.content or ""


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """A `/v1/chat/completions` body. Sampling fields are accepted and ignored: the pipeline's YAML decides."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    user: str | None = None

    @field_validator("messages")
    @classmethod
    def _has_user_turn(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" and m.text().strip() for m in value):
            raise ValueError("expected at least one user message with text content")
        return value

    def query(self) -> Query:
        """The question: the last user message (the pipeline answers one question per request)."""
        last = next(m for m in reversed(self.messages) if m.role == "user" and m.text().strip())
        return Query(last.text(), id=self.user)


def parse_request(body: bytes) -> ChatRequest:
    """Validate a request body; raises ValueError with a message saying what was expected."""
    try:
        return ChatRequest.model_validate_json(body)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"])) or "body"
        if first["type"] == "json_invalid":
            raise ValueError(f"the body is not valid JSON: {first['msg']}") from None
        got = "" if first["type"] == "missing" else f", got {first.get('input')!r}"
        msg = first["msg"].removeprefix("Value error, ")
        raise ValueError(f"{where}: {msg}{got}"[:500]) from None


def error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error object."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def models_list(name: str, created: int) -> dict[str, Any]:
    """The `/v1/models` answer: the one pipeline this server runs."""
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": created, "owned_by": "ragline"}],
    }


def new_id() -> str:
    """A completion id in OpenAI's style."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def _usage(answer: Answer) -> dict[str, int]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


def _sources(answer: Answer) -> dict[str, Any]:
    # Extra top-level keys: OpenAI clients keep unknown fields (`completion.model_extra`).
    return {
        "sources": [s.to_dict() for s in answer.sources],
        "citations": list(answer.citations),
        "citation_method": answer.citation_method,
    }


def completion(answer: Answer, model: str, completion_id: str) -> dict[str, Any]:
    """A `chat.completion` object for a whole answer, with its sources."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(answer),
        **_sources(answer),
    }


def chunk(
    model: str,
    completion_id: str,
    *,
    content: str | None = None,
    role: bool = False,
    answer: Answer | None = None,
    usage_only: Answer | None = None,
) -> dict[str, Any]:
    """A `chat.completion.chunk`: a text delta, the closing chunk (with sources), or the usage chunk."""
    base = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    if usage_only is not None:
        return {**base, "choices": [], "usage": _usage(usage_only)}
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
    if answer is not None:
        choice["finish_reason"] = "stop"
        return {**base, "choices": [choice], **_sources(answer)}
    return {**base, "choices": [choice]}
