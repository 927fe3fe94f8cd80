"""`generator.openai`: send the final prompt to any OpenAI-compatible server, streaming or not."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ragline.errors import MissingDependency, RaglineError
from ragline.generators.answer import final_state, finish_answer, prompt_of
from ragline.pipeline.stage import ConfiguredStage, StageConfig
from ragline.types import Prompt, RunState

if TYPE_CHECKING:
    import httpx

__all__ = ["OpenAIGenerator", "OpenAIGeneratorConfig", "ServerError"]

# 408 and 409 are what some gateways send for a request they dropped; the rest are overload or
# server faults, which a later attempt can outlive. Other 4xx mean the request itself is wrong.
_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class ServerError(RaglineError):
    """The OpenAI-compatible server refused the request or failed after every retry."""


class OpenAIGeneratorConfig(StageConfig):
    """Parameters of `generator.openai`. The API key is read from the environment, never stored."""

    model: str
    """The model name the server expects (e.g. the name `llama_cpp.server` or vLLM serves)."""
    base_url: str = Field(default="https://api.openai.com/v1", pattern=r"^https?://")
    """The server's API root, the part before `/chat/completions`."""
    api_key_env: str | None = Field(default="OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The environment variable holding the API key; null or unset sends no key (local servers)."""
    chat: bool = True
    """Use `/chat/completions` with system and user messages; false uses `/completions` with the plain prompt."""
    max_new_tokens: int = Field(default=96, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list, max_length=4)
    """Stop strings, sent to the server (OpenAI accepts at most four)."""
    stream: bool = True
    """Ask the server for server-sent events, so `Pipeline.stream` yields text as it arrives."""
    timeout: float = Field(default=120.0, gt=0.0)
    """Seconds to wait for the server between bytes (connecting has its own 10 s limit)."""
    max_retries: int = Field(default=3, ge=0, le=10)
    """Further attempts after a 408/409/429/5xx status or a connection error (never once text arrived)."""
    backoff: float = Field(default=0.5, ge=0.0, le=60.0)
    """First retry delay in seconds; it doubles per attempt (capped at 30 s), with random jitter."""


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.read().decode("utf-8", "replace")
    except Exception:  # a broken body must not hide the status line
        body = ""
    try:
        data = json.loads(body)
        err = data.get("error", data) if isinstance(data, dict) else data
        message = err.get("message", body) if isinstance(err, dict) else str(err)
    except ValueError:
        message = body
    message = " ".join(str(message).split())
    return message[:500] or "(empty body)"


class OpenAIGenerator(ConfiguredStage[OpenAIGeneratorConfig]):
    """Generate the answer on an OpenAI-compatible server (OpenAI, vLLM, llama.cpp), then cite sources.

    The prompt comes from the `prompt.*` stage before it (or the default numbered prompt), and the
    `Answer` has the same shape as `generator.hf`'s. The key is read from `api_key_env` on each
    request, so it never enters the config, reprs, traces or logs.

    Example:
        >>> gen = OpenAIGenerator(base_url="http://127.0.0.1:8080/v1", model="smollm2")  # doctest: +SKIP
    """

    type_name = "generator.openai"
    Config = OpenAIGeneratorConfig

    def __init__(self, config: OpenAIGeneratorConfig | None = None, /, **params: Any) -> None:
        super().__init__(config, **params)
        self._client: httpx.Client | None = None

    def warm_up(self) -> None:
        """Open the HTTP connection pool (no request is sent)."""
        if self._client is None:
            try:
                import httpx
            except ImportError as err:
                raise MissingDependency(
                    "httpx", extra="openai", purpose="generator.openai"
                ) from err
            timeout = httpx.Timeout(self.config.timeout, connect=min(10.0, self.config.timeout))
            self._client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- the request -----------------------------------------------------------------------

    def _url(self) -> str:
        path = "/chat/completions" if self.config.chat else "/completions"
        return self.config.base_url.rstrip("/") + path

    def _headers(self) -> dict[str, str]:
        env = self.config.api_key_env
        key = os.environ.get(env, "") if env else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _body(self, prompt: Prompt) -> dict[str, Any]:
        cfg = self.config
        body: dict[str, Any] = {
            "model": cfg.model,
            "max_tokens": cfg.max_new_tokens,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "stream": cfg.stream,
        }
        if cfg.chat:
            body["messages"] = prompt.messages()
        else:
            body["prompt"] = prompt.plain()
        if cfg.stop:
            body["stop"] = cfg.stop
        if cfg.seed is not None:
            body["seed"] = cfg.seed
        if cfg.stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after is not None:
            try:
                return min(30.0, max(0.0, float(retry_after)))
            except ValueError:
                pass  # an HTTP date; fall back to our own schedule
        # Jitter spreads clients that failed together, so they do not retry in lockstep.
        return min(30.0, self.config.backoff * 2**attempt) * random.uniform(0.5, 1.0)

    def _open(self, prompt: Prompt) -> httpx.Response:
        """Send the request, retrying overloads, server faults and connection errors; return the open response."""
        import httpx

        assert self._client is not None
        url, body = self._url(), self._body(prompt)
        for attempt in range(self.config.max_retries + 1):
            last = attempt == self.config.max_retries
            response = None
            try:
                request = self._client.build_request(
                    "POST", url, json=body, headers=self._headers()
                )
                response = self._client.send(request, stream=True)
            except httpx.TransportError as err:
                if last:
                    raise ServerError(
                        f"generator.openai: cannot reach {url} after {attempt + 1} attempts: "
                        f"{type(err).__name__}: {err}"
                    ) from None
            else:
                if response.status_code < 400:
                    return response
                status = f"{response.status_code} {response.reason_phrase}".strip()
                message = _error_message(response)
                response.close()
                if response.status_code not in _RETRY_STATUS:
                    hint = ""
                    if response.status_code in (401, 403) and self.config.api_key_env:
                        hint = f" (is ${self.config.api_key_env} set to a valid key?)"
                    raise ServerError(f"generator.openai: {url} answered {status}: {message}{hint}")
                if last:
                    raise ServerError(
                        f"generator.openai: {url} answered {status} on all {attempt + 1} attempts: {message}"
                    )
            time.sleep(self._delay(attempt, response))
        raise AssertionError("unreachable: the last attempt returns or raises")

    # -- reading the answer ----------------------------------------------------------------

    def _text_of(self, choice: dict[str, Any]) -> str:
        if self.config.chat:
            part = choice.get("delta") or choice.get("message") or {}
            return str(part.get("content") or "")
        return str(choice.get("text") or "")

    def _events(self, response: httpx.Response) -> Iterator[dict[str, Any]]:
        """Parse server-sent events: one JSON object per `data:` line, until `data: [DONE]`."""
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue  # comments, event names, keep-alives and blank separators
            payload = line[5:].strip()
            if payload == "[DONE]":
                return
            try:
                event = json.loads(payload)
            except ValueError:
                raise ServerError(
                    f"generator.openai: the server sent a malformed event: {payload[:200]!r}"
                ) from None
            if isinstance(event, dict) and "error" in event:
                raise ServerError(
                    f"generator.openai: the server failed mid-stream: {event['error']}"
                )
            yield event

    def _chunks(self, response: httpx.Response, usage: dict[str, int]) -> Iterator[str]:
        """Yield answer text as it arrives, filling `usage` from the server's counts."""
        if not self.config.stream:
            data = json.loads(response.read())
            usage.update(data.get("usage") or {})
            choices = data.get("choices") or [{}]
            yield self._text_of(choices[0])
            return
        pieces = 0
        for event in self._events(response):
            usage.update(event.get("usage") or {})
            for choice in event.get("choices") or []:
                if text := self._text_of(choice):
                    pieces += 1
                    yield text
        # Servers that ignore `stream_options` send no usage; one event carries one token.
        usage.setdefault("completion_tokens", pieces)

    def stream(self, state: RunState) -> Iterator[str | RunState]:
        """Yield text chunks as the server sends them, then the final state with its `Answer`."""
        self.warm_up()
        import httpx

        started = time.perf_counter()
        prompt = prompt_of(state)
        first: float | None = None
        usage: dict[str, int] = {}
        parts: list[str] = []
        response = self._open(prompt)
        try:
            for chunk in self._chunks(response, usage):
                first = first or time.perf_counter()
                parts.append(chunk)
                yield chunk
        except httpx.TransportError as err:
            raise ServerError(
                f"generator.openai: the connection to {self._url()} broke mid-answer: {err}"
            ) from None
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ServerError(
                f"generator.openai: unexpected response from {self._url()}: {err}"
            ) from None
        finally:
            response.close()
        yield finish_answer(
            state,
            prompt,
            "".join(parts),
            stage=self.name,
            started=started,
            first_token_at=first,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            model=self.config.model,
            base_url=self.config.base_url,
        )

    def run(self, state: RunState) -> RunState:
        """Generate the whole answer."""
        return final_state(self.stream(state))
