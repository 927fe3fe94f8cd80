"""`generator.langchain_chat`: any LangChain chat model as ragline's generator stage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationInfo, field_validator

from ragline.errors import MissingDependency
from ragline.generators.answer import final_state, finish_answer, prompt_of
from ragline.pipeline.stage import ConfiguredStage, StageConfig
from ragline.retrievers.langchain import (
    build_from_factory,
    check_factory,
    live_not_serialisable,
    live_options,
)
from ragline.types import Prompt, RunState

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

__all__ = ["LangChainChatConfig", "LangChainChatGenerator"]


class LangChainChatConfig(StageConfig):
    """Parameters of `generator.langchain_chat` built from YAML: a factory returning the chat model.

    The factory runs code named by the pipeline file, so it needs `allow_imports: true`.
    """

    allow_imports: bool = False
    """Opt in to importing and calling `factory` (declared first so `factory`'s check sees it)."""
    factory: str
    """The callable returning a `BaseChatModel`, as "package.module:callable"."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments passed to the factory."""

    @field_validator("factory")
    @classmethod
    def _factory_is_allowed(cls, value: str, info: ValidationInfo) -> str:
        return check_factory(value, info)


class _LiveOptions(StageConfig):
    """Options of a stage wrapping a live chat model object (only `name`)."""


def _base_chat_model() -> type[BaseChatModel]:
    try:
        from langchain_core.language_models import BaseChatModel
    except ImportError as err:
        raise MissingDependency(
            "langchain-core", extra="langchain", purpose="generator.langchain_chat"
        ) from err
    return BaseChatModel


def _messages(prompt: Prompt) -> list[BaseMessage]:
    from langchain_core.messages import HumanMessage, SystemMessage

    system, user = prompt.messages()
    return [SystemMessage(system["content"]), HumanMessage(user["content"])]


def _usage(message: Any) -> tuple[int, int]:
    usage = getattr(message, "usage_metadata", None) or {}
    return int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))


class LangChainChatGenerator(ConfiguredStage[LangChainChatConfig]):
    """Generate the answer with any LangChain chat model (streaming when the model streams).

    The prompt is the pipeline's numbered prompt as a system and a user message; citations and
    the `Answer` are built as for `generator.hf`. Token counts come from the model's
    `usage_metadata` when it reports them, else 0.

    Example:
        >>> stage = LangChainChatGenerator(chat_model=ChatOpenAI(model="gpt-4o-mini"))  # doctest: +SKIP
    """

    type_name = "generator.langchain_chat"
    Config = LangChainChatConfig

    def __init__(
        self,
        config: LangChainChatConfig | None = None,
        /,
        *,
        chat_model: BaseChatModel | None = None,
        **params: Any,
    ) -> None:
        self._model: BaseChatModel | None = None
        self._live = chat_model is not None
        if chat_model is None:
            super().__init__(config, **params)
            return
        if config is not None:
            raise TypeError(
                "LangChainChatGenerator: pass a live `chat_model` or a config, not both"
            )
        if not isinstance(chat_model, _base_chat_model()):
            raise TypeError(
                "LangChainChatGenerator: chat_model: expected a langchain_core BaseChatModel, "
                f"got {type(chat_model).__name__}"
            )
        self.config = live_options(self.type_name, _LiveOptions, params)
        self._model = chat_model

    def warm_up(self) -> None:
        """Call the factory once; a live model needs nothing."""
        if self._model is not None:
            return
        self._model = build_from_factory(self.config, _base_chat_model(), self.type_name)

    def stream(self, state: RunState) -> Iterator[str | RunState]:
        """Yield text chunks as the model streams them, then the final state with its `Answer`."""
        self.warm_up()
        assert self._model is not None
        started = time.perf_counter()
        prompt = prompt_of(state)
        first: float | None = None
        parts: list[str] = []
        total: Any = None
        for chunk in self._model.stream(_messages(prompt)):
            total = chunk if total is None else total + chunk
            if text := chunk.text:
                first = first or time.perf_counter()
                parts.append(text)
                yield text
        yield self._finish(state, prompt, "".join(parts), total, started, first)

    def run(self, state: RunState) -> RunState:
        """Generate the whole answer."""
        return final_state(self.stream(state))

    async def arun(self, state: RunState) -> RunState:
        """Like `run`, through the model's `ainvoke`."""
        self.warm_up()
        assert self._model is not None
        started = time.perf_counter()
        prompt = prompt_of(state)
        message = await self._model.ainvoke(_messages(prompt))
        return self._finish(state, prompt, message.text, message, started, None)

    def _finish(
        self,
        state: RunState,
        prompt: Prompt,
        text: str,
        message: Any,
        started: float,
        first: float | None,
    ) -> RunState:
        """The `Answer` state, with token counts from the message's `usage_metadata` (else 0)."""
        tokens_in, tokens_out = _usage(message)
        return finish_answer(
            state,
            prompt,
            text,
            stage=self.name,
            started=started,
            first_token_at=first,
            prompt_tokens=tokens_in,
            completion_tokens=tokens_out,
            model=type(self._model).__name__,
        )

    def to_config(self) -> dict[str, Any]:
        """The YAML form of a factory-built stage; a live model object cannot be saved."""
        if self._live:
            raise live_not_serialisable(self.type_name, self._model)
        return super().to_config()

    def __repr__(self) -> str:
        if not self._live:
            return super().__repr__()
        return f"{type(self).__name__}(chat_model={type(self._model).__name__}(...))"
