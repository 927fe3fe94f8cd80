"""`retriever.langchain`: any LangChain `BaseRetriever` as a stage, plus document converters."""

from __future__ import annotations

import hashlib
import importlib
import numbers
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from ragline.errors import ConfigError, MissingDependency, RaglineError
from ragline.pipeline.stage import ConfiguredStage, StageConfig, format_validation_error
from ragline.types import Document, RunState, StageTrace

if TYPE_CHECKING:
    from langchain_core.documents import Document as LCDocument
    from langchain_core.retrievers import BaseRetriever

__all__ = [
    "LangChainConfig",
    "LangChainOptions",
    "LangChainRetriever",
    "check_factory",
    "from_langchain_documents",
    "import_factory",
    "to_langchain_documents",
]

_FACTORY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _langchain_core() -> tuple[type[BaseRetriever], type[LCDocument]]:
    try:
        from langchain_core.documents import Document as LCDocument
        from langchain_core.retrievers import BaseRetriever
    except ImportError as err:
        raise MissingDependency(
            "langchain-core", extra="langchain", purpose="retriever.langchain"
        ) from err
    return BaseRetriever, LCDocument


def _document_id(lc_doc: LCDocument) -> str:
    if lc_doc.id:
        return str(lc_doc.id)
    meta_id = lc_doc.metadata.get("id")
    if meta_id is not None and meta_id != "":
        return str(meta_id)
    digest = hashlib.sha1(lc_doc.page_content.encode("utf-8"), usedforsecurity=False)
    return digest.hexdigest()[:16]


def from_langchain_documents(
    lc_docs: Iterable[LCDocument], *, score_key: str = "score"
) -> list[Document]:
    """Convert LangChain documents to ragline documents.

    The id is `lc_doc.id`, else `metadata["id"]`, else the first 16 hex digits of the SHA-1 of
    the text; metadata is kept whole (so `metadata["title"]` is the title); the score is
    `metadata[score_key]` when that is a number, else None.
    """
    out = []
    for lc_doc in lc_docs:
        metadata = dict(lc_doc.metadata)
        raw = metadata.get(score_key)
        is_number = isinstance(raw, numbers.Real) and not isinstance(raw, bool)
        score = float(raw) if is_number else None  # type: ignore[arg-type]
        out.append(Document(_document_id(lc_doc), lc_doc.page_content, metadata, score))
    return out


def to_langchain_documents(
    docs: Sequence[Document], *, score_key: str | None = "score"
) -> list[LCDocument]:
    """Convert ragline documents to LangChain documents, keeping ids and metadata.

    A document's score, when it has one, is written to `metadata[score_key]` (skipped when
    `score_key` is None), which is where `from_langchain_documents` reads it back.
    """
    _, lc_document = _langchain_core()
    out = []
    for doc in docs:
        metadata = dict(doc.metadata)
        if score_key is not None and doc.score is not None:
            metadata[score_key] = doc.score
        out.append(lc_document(page_content=doc.text, metadata=metadata, id=doc.id))
    return out


class LangChainOptions(StageConfig):
    """Parameters of `retriever.langchain` that apply to a live retriever object too."""

    top_k: int | None = Field(default=None, ge=1)
    """Keep at most this many of the retriever's documents; null keeps all."""


class LangChainConfig(LangChainOptions):
    """Parameters of `retriever.langchain` built from YAML: a factory that returns the retriever.

    Calling the factory runs code named by the pipeline file, so it is refused unless the stage
    sets `allow_imports: true`.
    """

    # Declared before `factory` so that factory's validator can see it.
    allow_imports: bool = False
    """Opt in to importing and calling `factory`."""
    factory: str
    """The callable returning a `BaseRetriever`, as "package.module:callable"."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments passed to the factory."""

    @field_validator("factory")
    @classmethod
    def _factory_is_allowed(cls, value: str, info: ValidationInfo) -> str:
        return check_factory(value, info)


def check_factory(value: str, info: ValidationInfo) -> str:
    """Validate a `factory` field: an import path, and `allow_imports` set earlier in the config."""
    if not _FACTORY.fullmatch(value):
        raise ValueError("expected an import path 'package.module:callable'")
    if not info.data.get("allow_imports", False):
        raise ValueError(
            "calling a factory runs code named by the pipeline; "
            "set `allow_imports: true` on this stage to allow it"
        )
    return value


def import_factory(target: str, type_name: str = "retriever.langchain") -> Callable[..., Any]:
    """Import the callable named `package.module:callable`; errors name the stage type."""
    module, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"{type_name}: cannot import factory {target!r}: {err}") from None
    if not callable(obj):
        raise ConfigError(
            f"{type_name}: factory {target!r} is not callable, got {type(obj).__name__}"
        )
    return obj


def live_options(type_name: str, options: type[StageConfig], params: dict[str, Any]) -> Any:
    """Validate the options of a stage wrapping a live object; errors name the stage type."""
    try:
        return options(**params)
    except ValidationError as err:
        lines = [f"{'.'.join(map(str, loc))}: {m}" for loc, m in format_validation_error(err)]
        raise ConfigError(f"{type_name}: " + "; ".join(lines)) from None


def build_from_factory(config: Any, expected: type, type_name: str) -> Any:
    """Call a config's `factory(**kwargs)` and check it returned an `expected` instance."""
    made = import_factory(config.factory, type_name)(**config.kwargs)
    if not isinstance(made, expected):
        raise ConfigError(
            f"{type_name}: factory {config.factory!r} must return a langchain_core "
            f"{expected.__name__}, got {type(made).__name__}"
        )
    return made


def live_not_serialisable(type_name: str, obj: Any) -> RaglineError:
    """The error for `to_config` on a stage wrapping a live object, which YAML cannot hold."""
    return RaglineError(
        f"{type_name}: a stage wrapping a live {type(obj).__name__} object cannot be "
        "serialised; build it with `factory: 'package.module:callable'` and "
        "`allow_imports: true` to save it as YAML"
    )


class LangChainRetriever(ConfiguredStage[LangChainOptions]):
    """Retrieve with any LangChain `BaseRetriever` (vector databases, web search, custom code).

    Build it from a live object in Python, or from a factory in YAML (with `allow_imports: true`).

    Example:
        >>> stage = LangChainRetriever(retriever=my_retriever, top_k=5)  # doctest: +SKIP
        >>> stage = LangChainRetriever(  # doctest: +SKIP
        ...     factory="my_pkg.search:make_retriever", kwargs={"k": 8}, allow_imports=True
        ... )
    """

    type_name = "retriever.langchain"
    Config = LangChainConfig

    def __init__(
        self,
        config: LangChainConfig | None = None,
        /,
        *,
        retriever: BaseRetriever | None = None,
        **params: Any,
    ) -> None:
        self._retriever: BaseRetriever | None = None
        self._live = retriever is not None
        if retriever is None:
            super().__init__(config, **params)
            return
        if config is not None:
            raise TypeError("LangChainRetriever: pass a live `retriever` or a config, not both")
        base_retriever, _ = _langchain_core()
        if not isinstance(retriever, base_retriever):
            raise TypeError(
                f"LangChainRetriever: retriever: expected a langchain_core BaseRetriever, "
                f"got {type(retriever).__name__}"
            )
        self.config = live_options(self.type_name, LangChainOptions, params)
        self._retriever = retriever

    def warm_up(self) -> None:
        """Call the factory once to build the retriever; a live retriever needs nothing."""
        if self._retriever is not None:
            return
        assert isinstance(self.config, LangChainConfig)
        base_retriever, _ = _langchain_core()
        self._retriever = build_from_factory(self.config, base_retriever, self.type_name)

    def _finish(self, state: RunState, found: list[LCDocument], started: float) -> RunState:
        docs = from_langchain_documents(found)[: self.config.top_k]
        trace = StageTrace.since(self.name, started, retrieved=len(docs), candidates=len(found))
        return state.evolve(documents=tuple(docs), trace=trace)

    def run(self, state: RunState) -> RunState:
        """Put the retriever's documents (at most `top_k`) into `state.documents`."""
        self.warm_up()
        assert self._retriever is not None
        started = time.perf_counter()
        return self._finish(state, self._retriever.invoke(state.query.text), started)

    async def arun(self, state: RunState) -> RunState:
        """Like `run`, through the retriever's `ainvoke`."""
        self.warm_up()
        assert self._retriever is not None
        started = time.perf_counter()
        return self._finish(state, await self._retriever.ainvoke(state.query.text), started)

    def to_config(self) -> dict[str, Any]:
        """The YAML form of a factory-built stage; a live retriever object cannot be saved."""
        if self._live:
            raise live_not_serialisable(self.type_name, self._retriever)
        return super().to_config()

    def __repr__(self) -> str:
        if not self._live:
            return super().__repr__()
        options = self.config.model_dump(exclude_defaults=True)
        params = "".join(f", {k}={v!r}" for k, v in options.items())
        return f"{type(self).__name__}(retriever={type(self._retriever).__name__}(...){params})"
