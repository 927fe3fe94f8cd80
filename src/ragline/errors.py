"""The ragline exception hierarchy: every error a user can act on derives from `RaglineError`."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "IndexCorrupt",
    "IndexError_",
    "IndexNotFound",
    "KernelUnavailable",
    "MissingDependency",
    "ModelNotFound",
    "RaglineError",
    "UsageError",
]


class RaglineError(Exception):
    """Base class of all errors raised by ragline on purpose."""

    #: Exit status the CLI uses for this error: 2 for usage and configuration, 1 at run time.
    exit_code: int = 1


class UsageError(RaglineError):
    """An argument or input given by the caller is invalid (empty question, bad file format)."""

    exit_code = 2


class ConfigError(UsageError):
    """A pipeline or stage configuration is invalid; the message names the file, path and line."""


class IndexError_(RaglineError):
    """An index directory cannot be used (named with a trailing underscore to keep the builtin)."""


class IndexNotFound(IndexError_, UsageError):
    """The index directory named by the user does not exist or holds no ragline index."""

    exit_code = 2


class IndexCorrupt(IndexError_):
    """An index directory exists but its manifest or files do not match what was written."""


class ModelNotFound(RaglineError):
    """A model name resolves to no weights on this machine and they could not be fetched."""


class MissingDependency(RaglineError):
    """An optional package is needed; the message carries the `pip install ragline[extra]` hint."""

    def __init__(self, package: str, extra: str | None = None, purpose: str = "") -> None:
        hint = f"pip install 'ragline[{extra}]'" if extra else f"pip install {package}"
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"the package '{package}' is not installed{what}; install it with: {hint}")
        self.package = package
        self.extra = extra


class KernelUnavailable(RaglineError):
    """A requested GPU kernel cannot run here (no GPU, no Triton, unsupported shape or dtype)."""
