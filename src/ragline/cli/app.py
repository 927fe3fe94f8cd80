"""The typer application, global options and the error-to-exit-code policy."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Annotated

import typer

from ragline._version import __version__

__all__ = ["app", "main", "state"]


class _State:
    debug = False
    verbose = False


state = _State()

app = typer.Typer(
    name="ragline",
    help="Retrieval-augmented generation: index documents, ask questions, run batches.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"ragline {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log progress details to stderr.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Retrieval-augmented generation over long contexts."""
    state.debug = debug or os.environ.get("RAGLINE_DEBUG") == "1"
    state.verbose = verbose
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="ragline: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        # Library chatter (weight-loading bars, advisory warnings) is noise on a CLI's stderr.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def _fail(message: str, code: int) -> int:
    print(f"ragline: error: {message}", file=sys.stderr)
    if state.debug:
        traceback.print_exc()
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return its exit status: 0 ok, 1 runtime error, 2 usage or configuration error."""
    import signal

    # Importing the command modules registers their commands.
    from ragline.cli import calibrate, commands, compress, models, retrieval, serve  # noqa: F401
    from ragline.errors import RaglineError

    # `ragline ask ... | head` should end quietly when the reader goes away, like any Unix tool.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    try:
        app(args=argv, prog_name="ragline", standalone_mode=False)
    except typer.Exit as err:
        return int(err.exit_code)
    except typer.Abort:
        return 130
    except RaglineError as err:
        # Usage and config errors read best bare; runtime errors say what kind they are.
        message = str(err) if err.exit_code == 2 else f"{type(err).__name__}: {err}"
        return _fail(message, err.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        return 0
    except Exception as err:
        # Parser errors are click exceptions; newer typer vendors click, so match the interface.
        if hasattr(err, "format_message") and isinstance(getattr(err, "exit_code", None), int):
            ctx = getattr(err, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            return _fail(f"{err.format_message()}{where}", 2)
        return _fail(f"{type(err).__name__}: {err}", 1)
    return 0
