"""`orchestrate matrix show|validate|schema`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from orchestrator.cli.app import App, format_option, matrix_options, pass_app, print_rows
from orchestrator.config import load_matrix
from orchestrator.config.matrix import expand
from orchestrator.config.schema import matrix_json_schema


@click.group()
def matrix() -> None:
    """Inspect and check matrix files."""


@matrix.command()
@matrix_options
@format_option
@click.option("--index-root", is_flag=True, help="Print only the resolved index root folder.")
@pass_app
def show(app: App, *, fmt: str, index_root: bool) -> None:
    """List the expanded platforms."""
    if index_root:
        click.echo(str(app.matrix.index.published.root))
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
@matrix_options
@click.argument("file", type=click.Path(path_type=Path), required=False)
@pass_app
def validate(app: App, file: Path | None) -> None:
    """Check a matrix file (FILE, else --matrix); exit 2 with file:line:key when wrong."""
    path = file or app.matrix_path
    loaded = load_matrix(path)
    platforms, engines = len(expand(loaded)), len(loaded.engines)
    app.console.print(
        f"{path}: ok, {platforms} platform{'s' * (platforms != 1)}, "
        f"{engines} engine{'s' * (engines != 1)}"
    )


@matrix.command()
def schema() -> None:
    """Print the matrix file's JSON Schema (the repository keeps it in
    schema/platforms.schema.json, which editors read through a yaml-language-server
    `$schema` comment)."""
    click.echo(json.dumps(matrix_json_schema(), indent=2, sort_keys=True))
