"""Stages that order documents before generation."""

from ragline.reorder.sort import SortReorderer

__all__ = ["SortReorderer"]
