"""The README's commands stay true: CI runs its test command, and its CLI examples parse."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _setup_commands() -> list[str]:
    block = re.search(r"## Two commands\n.*?```bash\n(.*?)```", README, re.S)
    assert block, "README has no '## Two commands' bash block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_readme_has_exactly_two_setup_commands() -> None:
    install, tests = _setup_commands()
    assert "ragline ask" in install and "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _, tests = _setup_commands()
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == tests


def test_readme_yaml_example_is_the_default_pipeline() -> None:
    default = (REPO / "examples" / "pipelines" / "default.yaml").read_text(encoding="utf-8")
    for key in (
        "type: retriever.bm25",
        "top_k: 3",
        "model: smollm2-135m-instruct",
        "max_new_tokens: 64",
    ):
        assert key in default and key in README
