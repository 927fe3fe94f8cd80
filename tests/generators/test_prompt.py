"""prompt.numbered renders `[n] title: text` and numbers sources from 1."""

from __future__ import annotations

from ragline.generators.prompt import NumberedPrompt
from ragline.types import Document, Query, RunState


def test_numbering_titles_and_untitled_documents() -> None:
    docs = (Document("x", "Alpha text.", {"title": "Alpha"}), Document("y", "Untitled text."))
    prompt = NumberedPrompt().run(RunState(Query("Which?"), documents=docs)).prompt
    assert prompt is not None
    assert prompt.context == "[1] Alpha: Alpha text.\n\n[2] Untitled text."
    assert [d.id for d in prompt.sources] == ["x", "y"]
    user = prompt.messages()[1]["content"]
    assert user.endswith("Question: Which?") and user.startswith("[1] Alpha")


def test_max_documents_and_custom_template() -> None:
    docs = tuple(Document(str(i), f"text {i}", {"title": f"T{i}"}) for i in range(5))
    stage = NumberedPrompt(max_documents=2, document_template="<{id}> {text}")
    prompt = stage.run(RunState(Query("q"), documents=docs)).prompt
    assert (
        prompt is not None
        and prompt.context == "<0> text 0\n\n<1> text 1"
        and len(prompt.sources) == 2
    )
