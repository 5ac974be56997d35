"""`orchestrate matrix show|validate`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from orchestrator.config import load_matrix
from orchestrator.matrix import expand

from .app import App, matrix_options, pass_app, print_rows


@click.group()
def matrix() -> None:
    """Inspect and check matrix files."""


@matrix.command()
@matrix_options
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--index-root", is_flag=True, help="Print only the resolved index root folder.")
@pass_app
def show(app: App, fmt: str, index_root: bool) -> None:
    """List the expanded platforms."""
    if index_root:
        click.echo(str(app.matrix.index.root))
        return
    platforms = app.platforms
    if fmt == "json":
        click.echo(json.dumps([p.as_dict() for p in platforms], indent=2))
        return
    rows = [
        (
            p.name,
            p.arch.value,
            p.family.value,
            " ".join(p.python),
            p.glibc,
            p.base if isinstance(p.base, str) else f"debootstrap {p.base.suite} ({p.base.mirror})",
        )
        for p in platforms
    ]
    print_rows(app, ("platform", "arch", "family", "python", "glibc", "base"), rows)


@matrix.command()
@click.argument("file", type=click.Path(path_type=Path))
@pass_app
def validate(app: App, file: Path) -> None:
    """Check a matrix file; exit 2 with file:line:key when it is wrong."""
    loaded = load_matrix(file)
    app.console.print(f"{file}: ok, {len(expand(loaded))} platforms, {len(loaded.engines)} engines")
