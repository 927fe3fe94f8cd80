"""The pipeline: stages, their registry, YAML loading and running."""

from ragline.pipeline.pipeline import Pipeline, as_query
from ragline.pipeline.stage import ConfiguredStage, Stage, StageConfig

__all__ = ["ConfiguredStage", "Pipeline", "Stage", "StageConfig", "as_query"]
