"""`ragline serve` as a real process on loopback, driven by the official `openai` client and raw HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="ragline[serve] is not installed")
pytest.importorskip("uvicorn", reason="ragline[serve] is not installed")
pytest.importorskip("openai", reason="the openai client is not installed")
import httpx
import openai

from ragline import Pipeline

QUESTION = "Who designed the Brassmoor Lighthouse?"
MODEL = "tiny-rag"


def pipeline_yaml(tmp: Path, index: Path, lm: Path) -> Path:
    path = tmp / "serve.yaml"
    path.write_text(
        f"""name: {MODEL}
stages:
  - type: retriever.bm25
    index: {index}
    top_k: 3
  - type: prompt.numbered
  - type: generator.hf
    model: {lm}
    max_new_tokens: 16
""",
        encoding="utf-8",
    )
    return path


def start_serve(args: list[str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start `ragline serve ARGS --port 0` and return the process and its /v1 URL."""
    script = Path(sys.executable).with_name("ragline")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "ragline.cli"]
    with log.open("wb") as err:
        proc = subprocess.Popen([*cmd, "serve", *args, "--port", "0"], stderr=err)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = log.read_text(encoding="utf-8", errors="replace")
        if "serving model" in text:
            url = text.split(" at ", 1)[1].split()[0]
            return proc, url
        if proc.poll() is not None:
            raise RuntimeError(f"ragline serve exited {proc.returncode}: {text}")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"ragline serve did not start: {log.read_text()}")


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, example_index: Path, tiny_lm_dir: Path
) -> Iterator[tuple[str, Path]]:
    """A `ragline serve` process running the tiny pipeline; yields its URL and the YAML."""
    tmp = tmp_path_factory.mktemp("serve")
    yaml_path = pipeline_yaml(tmp, example_index, tiny_lm_dir)
    args = [
        str(yaml_path),
        "--max-concurrency",
        "2",
        "--max-queue",
        "4",
        "--max-body-bytes",
        "4096",
    ]
    proc, url = start_serve(args, tmp / "serve.log")
    try:
        yield url, yaml_path
    finally:
        proc.terminate()
        proc.wait(15)
        assert proc.returncode in (0, -15), (tmp / "serve.log").read_text()


@pytest.fixture(scope="module")
def local(served: tuple[str, Path]) -> Pipeline:
    """The same pipeline in this process, to compare answers with."""
    pipe = Pipeline.from_yaml(served[1])
    pipe.warm_up()
    return pipe


def client(url: str) -> Any:
    return openai.OpenAI(base_url=url, api_key="not-needed", max_retries=0, timeout=60)


def test_models_and_health(served: tuple[str, Path]) -> None:
    url, _ = served
    assert [m.id for m in client(url).models.list().data] == [MODEL]
    health = httpx.get(url.removesuffix("/v1") + "/health").json()
    assert health["status"] == "ok" and health["model"] == MODEL


def test_chat_completion_answers_with_sources(served: tuple[str, Path], local: Pipeline) -> None:
    url, _ = served
    reply = client(url).chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "ignored"}, {"role": "user", "content": QUESTION}],
    )
    expected = local.run(QUESTION)
    assert reply.object == "chat.completion" and reply.model == MODEL
    assert reply.choices[0].message.content == expected.text
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == expected.completion_tokens
    extra = reply.model_extra
    assert [s["id"] for s in extra["sources"]] == [s.document.id for s in expected.sources]
    assert extra["citations"] == list(expected.citations)


def test_streaming_with_the_openai_client(served: tuple[str, Path], local: Pipeline) -> None:
    url, _ = served
    stream = client(url).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    expected = local.run(QUESTION)
    assert text.strip() == expected.text
    deltas = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 2  # token by token
    closing = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    assert [s["id"] for s in closing.model_extra["sources"]] == [
        s.document.id for s in expected.sources
    ]
    assert (
        chunks[-1].choices == []
        and chunks[-1].usage.completion_tokens == expected.completion_tokens
    )


def test_sse_wire_format_ends_with_done(served: tuple[str, Path]) -> None:
    url, _ = served
    body = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], "stream": True}
    with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[0][6:])["object"] == "chat.completion.chunk"


def test_concurrent_requests_all_answer(served: tuple[str, Path], local: Pipeline) -> None:
    url, _ = served
    questions = [QUESTION, "How tall is the Brassmoor Lighthouse?", "What is tarnberry wine?"] * 2

    def ask(q: str) -> str:
        reply = client(url).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": q}]
        )
        return str(reply.choices[0].message.content)

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(ask, questions))
    assert answers == [local.run(q).text for q in questions]


def test_oversized_request_is_413(served: tuple[str, Path]) -> None:
    url, _ = served
    with pytest.raises(openai.APIStatusError) as err:
        client(url).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x" * 10_000}]
        )
    assert err.value.status_code == 413
    assert "exceeds 4096 bytes" in err.value.response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"{not json", "the body is not valid JSON"),
        (b'{"model": "tiny-rag"}', "messages: Field required"),
        (b'{"model": "tiny-rag", "messages": []}', "messages: List should have at least 1 item"),
        (
            b'{"model": "tiny-rag", "messages": [{"role": "system", "content": "hi"}]}',
            "expected at least one user message",
        ),
        (b'{"model": "tiny-rag", "messages": [{"role": "wizard", "content": "hi"}]}', "role"),
        (b'{"model": 3, "messages": [{"role": "user", "content": "q"}]}', "model"),
    ],
)
def test_malformed_bodies_are_400(served: tuple[str, Path], content: bytes, pattern: str) -> None:
    url, _ = served
    r = httpx.post(
        f"{url}/chat/completions", content=content, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert pattern in error["message"] and error["type"] == "invalid_request_error"


def test_malformed_request_through_the_client_and_unknown_model(served: tuple[str, Path]) -> None:
    url, _ = served
    with pytest.raises(openai.BadRequestError):
        client(url).chat.completions.create(model=MODEL, messages=[])
    with pytest.raises(openai.NotFoundError, match="this server runs 'tiny-rag'"):
        client(url).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": QUESTION}]
        )


def test_client_disconnect_mid_stream_keeps_serving(
    served: tuple[str, Path], local: Pipeline
) -> None:
    url, _ = served
    for _ in range(3):
        stream = client(url).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": QUESTION}], stream=True
        )
        first = next(iter(stream))
        assert first.object == "chat.completion.chunk"
        stream.close()  # hang up mid-answer
    reply = client(url).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": QUESTION}]
    )
    assert reply.choices[0].message.content == local.run(QUESTION).text
    deadline = time.monotonic() + 10
    while (health := httpx.get(url.removesuffix("/v1") + "/health").json())["active"]:
        assert time.monotonic() < deadline, health
        time.sleep(0.1)


def test_binds_to_loopback_by_default(served: tuple[str, Path]) -> None:
    assert served[0].startswith("http://127.0.0.1:")


def test_serve_errors_are_one_line(tmp_path: Path) -> None:
    from tests.clitools import one_line_error, ragline

    line = one_line_error(ragline("serve", str(tmp_path / "missing.yaml")))
    assert line.startswith("ragline: error: ") and "missing.yaml: pipeline file not found" in line
    line = one_line_error(ragline("serve", "x.yaml", "--max-concurrency", "0"))
    assert "--max-concurrency" in line


def test_missing_serve_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from ragline.cli import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["serve", str(tmp_path / "p.yaml")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("install it with: pip install 'ragline[serve]'") and "\n" not in err
