"""The server's limits with a deliberately slow pipeline: queueing, 429 past the queue, and early stop on disconnect."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("starlette", reason="ragline[serve] is not installed")
pytest.importorskip("uvicorn", reason="ragline[serve] is not installed")
import httpx
import uvicorn

from ragline import Answer, Pipeline, RunState
from ragline.serve import ServeLimits
from ragline.serve.app import build_app


class SlowGenerator:
    """Streams `pieces` chunks, `delay` seconds apart, counting what it produced."""

    name = "generator.slow"

    def __init__(self, pieces: int = 20, delay: float = 0.05) -> None:
        self.pieces, self.delay = pieces, delay
        self.produced = 0
        self.finished = threading.Event()

    def stream(self, state: RunState) -> Iterator[str | RunState]:
        self.finished.clear()
        self.produced = 0
        try:
            for i in range(self.pieces):
                time.sleep(self.delay)
                self.produced += 1
                yield f"w{i} "
            text = " ".join(f"w{i}" for i in range(self.pieces))
            yield state.evolve(answer=Answer(text=text, question=state.query.text))
        finally:
            self.finished.set()

    def run(self, state: RunState) -> RunState:
        *_, final = self.stream(state)
        assert isinstance(final, RunState)
        return final


def serve(pipeline: Pipeline, limits: ServeLimits) -> tuple[uvicorn.Server, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(build_app(pipeline, limits), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return server, url


@pytest.fixture
def slow() -> Iterator[tuple[SlowGenerator, str]]:
    gen = SlowGenerator()
    server, url = serve(Pipeline([gen], name="slow"), ServeLimits(max_concurrency=1, max_queue=1))
    try:
        yield gen, url
    finally:
        server.should_exit = True


def ask(url: str, stream: bool = False) -> httpx.Response:
    body = {"model": "slow", "messages": [{"role": "user", "content": "q"}], "stream": stream}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


def test_one_runs_one_waits_the_rest_get_429(slow: tuple[SlowGenerator, str]) -> None:
    _, url = slow
    with ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(ask, url)
        time.sleep(0.2)  # the first is running
        second = pool.submit(ask, url)
        time.sleep(0.2)  # the second is waiting
        refused = [ask(url) for _ in range(2)]
        assert [r.status_code for r in refused] == [429, 429]
        assert refused[0].headers["retry-after"] == "1"
        assert refused[0].json()["error"]["code"] == "server_busy"
        assert first.result().status_code == 200 and second.result().status_code == 200
    assert ask(url).status_code == 200  # the slots came back


def test_disconnect_stops_generation_and_frees_the_slot(slow: tuple[SlowGenerator, str]) -> None:
    gen, url = slow
    body = {"model": "slow", "messages": [{"role": "user", "content": "q"}], "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")  # the role chunk
        assert '"w0 "' in next(line for line in lines if line)
    assert gen.finished.wait(5)
    assert gen.produced < gen.pieces  # it stopped early instead of generating for nobody
    health = httpx.get(f"{url}/health").json()
    assert health["active"] == 0 and health["waiting"] == 0
    whole = ask(url).json()
    assert whole["choices"][0]["message"]["content"].startswith("w0 w1")
