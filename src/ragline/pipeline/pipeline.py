"""`Pipeline`: a linear chain of stages over one `RunState`, built in Python or from YAML."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from ragline.errors import ConfigError, RaglineError, UsageError
from ragline.fsutil import atomic_write_text
from ragline.pipeline.stage import Stage, format_validation_error
from ragline.pipeline.yamlio import Located, interpolate_env, load_yaml
from ragline.registry import UnknownStageType, build_stage, load_stage_class
from ragline.types import Answer, Query, RunState, StageTrace

if TYPE_CHECKING:
    from ragline.langchain.runnable import RaglineRunnable

__all__ = ["Pipeline"]

_TOP_KEYS = ("name", "description", "stages")


def as_query(question: str | Query) -> Query:
    """Validate a question (non-empty text) and wrap it as a `Query`."""
    query = (
        question
        if isinstance(question, Query)
        else Query(question)
        if isinstance(question, str)
        else None
    )
    if query is None:
        raise UsageError(f"question: expected a string or Query, got {type(question).__name__}")
    if not query.text.strip():
        raise UsageError("question: expected a non-empty question, got an empty string")
    return query


def _escape_env(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):
        return {k: _escape_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape_env(v) for v in value]
    return value


def _apply_overrides(spec: Any, overrides: Mapping[str, Mapping[str, Any]]) -> Any:
    if isinstance(spec, Mapping):
        for prefix, extra in overrides.items():
            if str(spec.get("type", "")).startswith(prefix):
                spec = {**spec, **extra}
    return spec


def _build_stage(doc: Located, i: int, spec: Any, allow_imports: bool) -> Stage:
    loc: tuple[str | int, ...] = ("stages", i)
    if not isinstance(spec, Mapping):
        raise doc.error(loc, f"expected a mapping with a 'type' key, got {spec!r}")
    params = dict(spec)
    type_name = params.pop("type", None)
    if not isinstance(type_name, str):
        raise doc.error(
            (*loc, "type"), f"expected a stage type name (e.g. 'retriever.bm25'), got {type_name!r}"
        )
    try:
        cls = load_stage_class(type_name, allow_imports=allow_imports)
    except UnknownStageType as err:
        raise doc.error((*loc, "type"), str(err)) from None
    config_cls = getattr(cls, "Config", None)
    try:
        return build_stage(cls, params)
    except ValidationError as err:
        fields = list(config_cls.model_fields) if config_cls is not None else []
        messages = [
            doc.where((*loc, *sub)) + msg
            for sub, msg in format_validation_error(err, fields=fields, type_name=type_name)
        ]
        raise ConfigError("\n".join(messages)) from None
    except TypeError as err:
        raise doc.error(loc, f"{type_name}: {err}") from None


class Pipeline:
    """A linear chain of stages: question -> documents -> prompt -> answer.

    Example:
        >>> pipe = Pipeline.from_yaml("examples/pipelines/default.yaml")  # doctest: +SKIP
        >>> print(pipe.run("When was the Brassmoor Lighthouse first lit?").text)  # doctest: +SKIP
    """

    def __init__(
        self, stages: Sequence[Stage], name: str = "pipeline", description: str = ""
    ) -> None:
        if not stages:
            raise ConfigError("a pipeline needs at least one stage")
        for i, stage in enumerate(stages):
            if not isinstance(stage, Stage):
                raise TypeError(
                    f"stages[{i}]: expected an object with `name` and `run(state)`, got {type(stage).__name__}"
                )
        self.stages: tuple[Stage, ...] = tuple(stages)
        self.name = name
        self.description = description
        self._warm = False
        self.warm_up_seconds = 0.0

    # -- construction and serialisation ------------------------------------------------------

    @classmethod
    def from_yaml(
        cls,
        path: str | os.PathLike[str],
        *,
        allow_imports: bool = False,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Pipeline:
        """Load a pipeline from a YAML file.

        Args:
            path: the YAML file.
            allow_imports: also accept `package.module:Class` as a stage type (off by default).
            overrides: parameters merged into every stage whose type starts with a given prefix,
                before validation, e.g. `{"retriever.": {"index": "./idx"}}` (the CLI's `--index`).
            env: variables for `${VAR}` interpolation instead of `os.environ`.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: pipeline file not found") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: cannot read the pipeline file: {err}") from None
        return cls._from_located(load_yaml(text, str(path)), allow_imports, overrides, env)

    @classmethod
    def from_config(
        cls,
        data: Mapping[str, Any],
        *,
        allow_imports: bool = False,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Pipeline:
        """Build from the dict form of `to_config()` (the YAML document as Python data; no `${VAR}`)."""
        return cls._from_located(
            Located(data, {}, "<config>"), allow_imports, overrides, None, interpolate=False
        )

    @classmethod
    def _from_located(
        cls,
        doc: Located,
        allow_imports: bool,
        overrides: Mapping[str, Mapping[str, Any]] | None,
        env: Mapping[str, str] | None,
        *,
        interpolate: bool = True,
    ) -> Pipeline:
        if overrides and isinstance(doc.data, Mapping) and isinstance(doc.data.get("stages"), list):
            # Overrides land before interpolation, so `index: ${RAGLINE_INDEX}` needs no variable
            # when the CLI's --index replaces it.
            stages = [_apply_overrides(spec, overrides) for spec in doc.data["stages"]]
            doc = Located({**doc.data, "stages": stages}, doc.lines, doc.source)
        data = interpolate_env(doc, env) if interpolate else doc.data
        if not isinstance(data, Mapping):
            raise doc.error(
                (), f"expected a mapping with a 'stages' list, got {type(data).__name__}"
            )
        for key in data:
            if key not in _TOP_KEYS:
                raise doc.error((key,), f"unknown key; expected one of {', '.join(_TOP_KEYS)}")
        specs = data.get("stages")
        if not isinstance(specs, list) or not specs:
            raise doc.error(("stages",), f"expected a non-empty list of stages, got {specs!r}")
        built = []
        for i, spec in enumerate(specs):
            built.append(_build_stage(doc, i, spec, allow_imports))
        name = data.get("name", "pipeline")
        if not isinstance(name, str):
            raise doc.error(("name",), f"expected a string, got {name!r}")
        return cls(built, name=name, description=str(data.get("description", "")))

    def to_config(self) -> dict[str, Any]:
        """The YAML document as Python data; `Pipeline.from_config` inverts it."""
        stages = []
        for stage in self.stages:
            to_config = getattr(stage, "to_config", None)
            if to_config is None:
                raise RaglineError(
                    f"stage {stage.name!r} ({type(stage).__name__}) has no to_config(); it cannot be saved as YAML"
                )
            stages.append(to_config())
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["stages"] = stages
        return out

    def to_yaml(self, path: str | os.PathLike[str] | None = None) -> str:
        """Serialise to YAML; with `path`, also write it atomically.

        A literal `${` in a value is written as `$${`, so loading the file gives back the same
        value instead of interpolating it.
        """
        text = yaml.safe_dump(_escape_env(self.to_config()), sort_keys=False, allow_unicode=True)
        if path is not None:
            atomic_write_text(path, text)
        return text

    # -- lifecycle ------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load every stage's models and indexes (also done on the first run)."""
        if self._warm:
            return
        t0 = time.perf_counter()
        for stage in self.stages:
            hook = getattr(stage, "warm_up", None)
            if hook is not None:
                hook()
        self.warm_up_seconds = time.perf_counter() - t0
        self._warm = True

    def close(self) -> None:
        """Release every stage's resources."""
        for stage in self.stages:
            hook = getattr(stage, "close", None)
            if hook is not None:
                hook()
        self._warm = False

    def __enter__(self) -> Pipeline:
        self.warm_up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running ---------------------------------------------------------------------------

    @staticmethod
    def _step(stage: Stage, state: RunState, started: float, new: RunState) -> RunState:
        if not isinstance(new, RunState):
            raise RaglineError(
                f"stage {stage.name!r} returned {type(new).__name__}, expected a RunState"
            )
        if len(new.trace) == len(state.trace):
            new = new.evolve(trace=StageTrace(stage.name, time.perf_counter() - started))
        return new

    def _run(self, stages: Sequence[Stage], state: RunState) -> RunState:
        for stage in stages:
            started = time.perf_counter()
            state = self._step(stage, state, started, stage.run(state))
        return state

    def run_state(self, question: str | Query) -> RunState:
        """Run every stage and return the final state (documents, prompt, answer, trace)."""
        query = as_query(question)  # before warm_up: a bad question should not cost a model load
        self.warm_up()
        return self._run(self.stages, RunState(query=query))

    @staticmethod
    def _answer(state: RunState) -> Answer:
        if state.answer is None:
            raise ConfigError(
                "the pipeline produced no answer: it has no generator stage (use run_state() for documents)"
            )
        return replace(state.answer, trace=state.trace, query_id=state.query.id)

    def run(self, question: str | Query) -> Answer:
        """Answer one question."""
        return self._answer(self.run_state(question))

    def stream(self, question: str | Query) -> Iterator[str | Answer]:
        """Answer one question, yielding text chunks as the last stage produces them, then the `Answer`."""
        query = as_query(question)
        self.warm_up()
        *head, last = self.stages
        state = self._run(head, RunState(query=query))
        started = time.perf_counter()
        stream = getattr(last, "stream", None)
        if stream is None:
            state = self._step(last, state, started, last.run(state))
        else:
            final: RunState | None = None
            for item in stream(state):
                if isinstance(item, RunState):
                    final = item
                else:
                    yield item
            if final is None:
                raise RaglineError(
                    f"stage {last.name!r}: stream() ended without yielding its final state"
                )
            state = self._step(last, state, started, final)
        answer = self._answer(state)
        if stream is None:
            yield answer.text
        yield answer

    def batch(self, questions: Iterable[str | Query], *, progress: bool = True) -> list[Answer]:
        """Answer many questions in order, with a progress bar on stderr."""
        from ragline.progress import progress_bar

        items = [as_query(q) for q in questions]
        self.warm_up()
        answers = []
        with progress_bar("answering", total=len(items), enabled=progress) as advance:
            for q in items:
                answers.append(self.run(q))
                advance(1)
        return answers

    async def arun_state(self, question: str | Query) -> RunState:
        """Async `run_state`: stages with `arun` are awaited, the others run in a worker thread."""
        state = RunState(query=as_query(question))
        if not self._warm:
            await asyncio.to_thread(self.warm_up)
        for stage in self.stages:
            started = time.perf_counter()
            arun = getattr(stage, "arun", None)
            new = (
                await arun(state) if arun is not None else await asyncio.to_thread(stage.run, state)
            )
            state = self._step(stage, state, started, new)
        return state

    async def arun(self, question: str | Query) -> Answer:
        """Async `run`."""
        return self._answer(await self.arun_state(question))

    async def astream(self, question: str | Query) -> AsyncIterator[str | Answer]:
        """Async `stream`: the synchronous stream runs in a worker thread, chunk by chunk."""
        it = self.stream(question)
        done = object()
        while (item := await asyncio.to_thread(next, it, done)) is not done:
            yield item  # type: ignore[misc]

    def as_runnable(self) -> RaglineRunnable:
        """This pipeline as a LangChain `Runnable` (needs `pip install 'ragline[langchain]'`).

        It takes a question string, `{"question": ...}` or a prompt template's output and returns an
        `AIMessage` whose `response_metadata` holds the sources; see `ragline.langchain`.

        Example:
            >>> chain = prompt | pipe.as_runnable() | StrOutputParser()  # doctest: +SKIP
        """
        from ragline.langchain.runnable import RaglineRunnable

        return RaglineRunnable(pipeline=self)

    def __repr__(self) -> str:
        return f"Pipeline(name={self.name!r}, stages=[{', '.join(s.name for s in self.stages)}])"
