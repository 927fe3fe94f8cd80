"""ragline: retrieval-augmented generation over long contexts, in one coherent library.

Example:
    >>> import ragline
    >>> pipe = ragline.Pipeline.from_yaml("examples/pipelines/default.yaml")  # doctest: +SKIP
    >>> pipe.run("When was the Brassmoor Lighthouse first lit?").text  # doctest: +SKIP
"""

from ragline._version import __version__
from ragline.errors import (
    ConfigError,
    IndexError_,
    KernelUnavailable,
    MissingDependency,
    ModelNotFound,
    RaglineError,
    UsageError,
)
from ragline.pipeline import ConfiguredStage, Pipeline, Stage, StageConfig
from ragline.registry import register_stage, stage_types
from ragline.types import Answer, Document, Prompt, Query, RunState, Source, StageTrace

__all__ = [
    "Answer",
    "ConfigError",
    "ConfiguredStage",
    "Document",
    "IndexError_",
    "KernelUnavailable",
    "MissingDependency",
    "ModelNotFound",
    "Pipeline",
    "Prompt",
    "Query",
    "RaglineError",
    "RunState",
    "Source",
    "Stage",
    "StageConfig",
    "StageTrace",
    "UsageError",
    "__version__",
    "register_stage",
    "stage_types",
]
