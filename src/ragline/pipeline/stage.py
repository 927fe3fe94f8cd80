"""The stage contract: a `name` and `run(state) -> state`, plus a typed-config base for built-ins."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from ragline.errors import ConfigError
from ragline.types import RunState

__all__ = ["ConfiguredStage", "Stage", "StageConfig", "format_validation_error"]


@runtime_checkable
class Stage(Protocol):
    """Anything with a `name` and `run(state) -> state` is a stage.

    Optional hooks, called when present: `warm_up()` (load models and indexes), `arun(state)`,
    `stream(state)` (yield text chunks, then the final state; generators only), `close()`.
    """

    @property
    def name(self) -> str:
        """The name traces and errors use for this stage."""
        ...

    def run(self, state: RunState) -> RunState:
        """Return a new state; never mutate the given one."""
        ...


class StageConfig(BaseModel):
    """Base of every stage's config: unknown keys are errors and values never change after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    """A display name for traces; defaults to the stage type."""


C = TypeVar("C", bound=StageConfig)


def format_validation_error(
    err: ValidationError, *, fields: list[str] | None = None, type_name: str = ""
) -> list[tuple[tuple[str | int, ...], str]]:
    """Turn a pydantic error into `(location, "message")` pairs saying what was expected and what came.

    With `fields` (the config's field names), an unknown key gets a "did you mean" suggestion.
    """
    from ragline.registry import close_matches

    out = []
    for e in err.errors():
        loc = tuple(e["loc"])
        if e["type"] == "extra_forbidden":
            msg = f"unknown key for {type_name}" if type_name else "unknown key"
            if fields and loc and isinstance(loc[-1], str):
                close = close_matches(loc[-1], fields)
                msg += (
                    f"; did you mean {close[0]!r}?"
                    if close
                    else f"; expected one of {', '.join(fields)}"
                )
        elif e["type"] == "missing":
            msg = "required key is missing"
        else:
            text = e["msg"].removeprefix("Value error, ")
            msg = f"{text[0].lower()}{text[1:]}"
            # Validators written here already say what arrived; pydantic's own messages do not.
            if e["type"] != "value_error":
                msg += f", got {e.get('input')!r}"
        out.append((loc, msg))
    return out


class ConfiguredStage(Generic[C]):
    """Base for built-in stages: a cheap validated constructor and a config round trip.

    Subclasses set `type_name` (the registry key, e.g. "retriever.bm25") and `Config`.
    Construct with keyword arguments (`BM25Retriever(index="idx", top_k=5)`) or a config object.
    """

    type_name: ClassVar[str]
    Config: ClassVar[type[StageConfig]]

    def __init__(self, config: C | None = None, /, **params: Any) -> None:
        if config is not None and params:
            raise TypeError(
                f"{type(self).__name__}: pass a config object or keyword arguments, not both"
            )
        if config is None:
            try:
                config = self.Config(**params)  # type: ignore[assignment]
            except ValidationError as err:
                lines = [
                    f"{'.'.join(map(str, loc))}: {msg}"
                    for loc, msg in format_validation_error(
                        err, fields=list(self.Config.model_fields)
                    )
                ]
                raise ConfigError(f"{self.type_name}: " + "; ".join(lines)) from None
        elif not isinstance(config, self.Config):
            raise TypeError(
                f"{type(self).__name__}: expected a {self.Config.__name__}, got {type(config).__name__}"
            )
        self.config: C = config  # type: ignore[assignment]

    @property
    def name(self) -> str:
        """The stage's display name: its config's `name`, else its type."""
        return self.config.name or self.type_name

    @classmethod
    def from_config(cls, params: Mapping[str, Any]) -> Self:
        """Build from a config mapping (without the `type` key); raises pydantic's ValidationError."""
        return cls(cls.Config(**params))  # type: ignore[arg-type]

    def to_config(self) -> dict[str, Any]:
        """The YAML form of this stage: its type and every non-default parameter."""
        return {
            "type": self.type_name,
            **self.config.model_dump(mode="json", exclude_defaults=True),
        }

    def warm_up(self) -> None:
        """Load heavy resources; built-ins without any do nothing."""

    def close(self) -> None:
        """Release resources; built-ins without any do nothing."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items() if k != "type")
        return f"{type(self).__name__}({params})"
