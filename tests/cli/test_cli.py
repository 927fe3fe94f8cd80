"""The `ragline` command through its real entry point: exit codes, messages, JSON, resumable runs."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from ragline._version import __version__
from tests.clitools import one_line_error, ragline

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs" / "answer.schema.json").read_text(encoding="utf-8"))


@pytest.fixture
def tiny_pipeline(tmp_path: Path, example_index: Path, tiny_lm_dir: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        f"""\
name: tiny
stages:
  - type: retriever.bm25
    index: {example_index}
    top_k: 2
  - type: reorder.sort
  - type: prompt.numbered
  - type: generator.hf
    model: {tiny_lm_dir}
    max_new_tokens: 6
""",
        encoding="utf-8",
    )
    return path


def test_version() -> None:
    proc = ragline("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"ragline {__version__}"


def test_malformed_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  - type: reorder.sort\n   oops: [\n", encoding="utf-8")
    line = one_line_error(ragline("ask", "q", "--pipeline", str(bad), "--index", str(tmp_path)))
    assert f"{bad}:3: malformed YAML" in line


def test_unknown_stage_type(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("stages:\n  - type: retriever.bm26\n    index: x\n", encoding="utf-8")
    line = one_line_error(ragline("ask", "q", "--pipeline", str(bad)))
    assert (
        f"{bad}:2: stages[0].type: unknown stage type 'retriever.bm26'; did you mean 'retriever.bm25'?"
        in line
    )


def test_wrong_parameter_type(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text(
        "stages:\n  - type: retriever.bm25\n    index: x\n    top_k: [1]\n", encoding="utf-8"
    )
    line = one_line_error(ragline("ask", "q", "--pipeline", str(bad)))
    assert f"{bad}:4: stages[0].top_k:" in line and "integer" in line


def test_missing_index_directory(tiny_pipeline: Path, tmp_path: Path) -> None:
    line = one_line_error(
        ragline("ask", "q", "--pipeline", str(tiny_pipeline), "--index", str(tmp_path / "nowhere"))
    )
    assert f"{tmp_path / 'nowhere'}: index directory not found" in line


def test_empty_question() -> None:
    line = one_line_error(ragline("ask", "  "))
    assert "question: expected a non-empty question" in line


def test_usage_error_from_the_parser() -> None:
    line = one_line_error(ragline("ask"))
    assert "Missing argument" in line


def test_debug_shows_the_traceback() -> None:
    proc = ragline("--debug", "ask", "")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_index_command_and_overwrite(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\n\nThe alpha fact.\n", encoding="utf-8")
    (docs / "b.txt").write_text("Beta is second.\n", encoding="utf-8")
    out = tmp_path / "idx"
    proc = ragline("index", str(docs), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "index": str(out),
        "documents": 2,
        "sources": 2,
        "components": ["bm25"],
    }
    again = ragline("index", str(docs), "--out", str(out))
    assert "already exists; pass --overwrite" in one_line_error(again)
    assert ragline("index", str(docs), "--out", str(out), "--overwrite").returncode == 0


def test_ask_json_validates_against_the_schema(tiny_pipeline: Path) -> None:
    proc = ragline(
        "ask", "Who designed the Brassmoor Lighthouse?", "--pipeline", str(tiny_pipeline), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    jsonschema.validate(data, SCHEMA)
    assert data["sources"][0]["id"] == "brassmoor-lighthouse.md"
    assert [t["stage"] for t in data["trace"]] == [
        "retriever.bm25",
        "reorder.sort",
        "prompt.numbered",
        "generator.hf",
    ]


def test_ask_streams_then_lists_sources(tiny_pipeline: Path) -> None:
    proc = ragline(
        "ask", "Who designed the Brassmoor Lighthouse?", "--pipeline", str(tiny_pipeline)
    )
    assert proc.returncode == 0, proc.stderr
    assert "\nSources:\n  [1]" in proc.stdout and "(brassmoor-lighthouse.md)" in proc.stdout


def test_run_is_resumable(tiny_pipeline: Path, tmp_path: Path) -> None:
    questions = tmp_path / "q.jsonl"
    rows = [
        {"id": f"q{i}", "question": q}
        for i, q in enumerate(["Who designed it?", "What is brinecake?", "When?"])
    ]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]), encoding="utf-8")
    out = tmp_path / "answers.jsonl"
    first = ragline("run", str(tiny_pipeline), "--questions", str(questions), "--out", str(out))
    assert first.returncode == 0, first.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["q0", "q1"]
    for line in lines:
        jsonschema.validate(json.loads(line), SCHEMA)
    # An interrupted run leaves a torn last line; a new question is added.
    out.write_text(lines[0] + "\n" + lines[1][:25], encoding="utf-8")
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    second = ragline("run", str(tiny_pipeline), "--questions", str(questions), "--out", str(out))
    assert second.returncode == 0, second.stderr
    assert "1 of 3 questions already answered" in second.stderr
    ids = [json.loads(x)["id"] for x in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(ids) == ["q0", "q1", "q2"] and ids[0] == "q0"


def test_run_rejects_bad_question_lines(tiny_pipeline: Path, tmp_path: Path) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "ok"}\n{"text": "no question key"}\n', encoding="utf-8")
    line = one_line_error(
        ragline(
            "run",
            str(tiny_pipeline),
            "--questions",
            str(questions),
            "--out",
            str(tmp_path / "o.jsonl"),
        )
    )
    assert f"{questions}:2: expected an object with a non-empty string 'question'" in line


def test_models_list_json(tmp_path: Path) -> None:
    proc = ragline("models", "list", "--json", cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    states = {row["name"]: row["state"] for row in json.loads(proc.stdout)}
    assert states == {
        "smollm2-135m-instruct": "missing",
        "gemma3-270m": "missing",
        "minilm-l6": "installed",
    }


def test_ask_offline_without_cached_model_names_the_pull_command(
    tmp_path: Path, example_index: Path
) -> None:
    empty = tmp_path / "findlinks"
    empty.mkdir()
    proc = ragline(
        "ask",
        "Who designed the Brassmoor Lighthouse?",
        "--index",
        str(example_index),
        cache=tmp_path / "cache",
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(empty),
        PIP_CONSTRAINT="",
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "ragline models pull smollm2-135m-instruct" in proc.stderr.strip().splitlines()[-1]
