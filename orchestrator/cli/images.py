"""`orchestrate images render|build|refresh`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import click

from orchestrator.cli.app import (
    App,
    echo_json,
    format_option,
    matrix_options,
    pass_app,
    print_rows,
    raise_if_cancelled,
    signals_cancel,
    workdir_option,
)
from orchestrator.cli.progress import LiveProgress
from orchestrator.core.errors import EXIT_FAILED
from orchestrator.images.build import ImageResult
from orchestrator.images.pipeline import ImagesOptions, ImagesReport, run_images
from orchestrator.images.render import render
from orchestrator.report.data import write_text_atomic


@click.group()
def images() -> None:
    """Builder images: render, build, refresh."""


@images.command("render")
@matrix_options
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("rendered"),
    show_default=True,
    help="Folder for <platform>/Dockerfile and its context files.",
)
@pass_app
def render_cmd(app: App, out: Path) -> None:
    """Write each platform's rendered Dockerfile and context (no Docker needed)."""
    for platform in app.platforms:
        rendered = render(platform, app.matrix)
        folder = out / platform.name
        for name, data in {"Dockerfile": rendered.dockerfile.encode(), **rendered.files}.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        click.echo(f"{folder / 'Dockerfile'}  (FROM {rendered.base})")


@images.command()
@matrix_options
@workdir_option
@click.option("--push", is_flag=True, help="Push per-arch tags and the multi-arch manifests.")
@click.option("--force", is_flag=True, help="Rebuild even when the inputs are unchanged.")
@click.option(
    "--allow-partial", is_flag=True, help="Publish a manifest list even when an arch failed."
)
@format_option
@pass_app
def build(app: App, *, push: bool, force: bool, allow_partial: bool, fmt: str) -> int:
    """Build the builder images that are missing or stale, in parallel."""
    return _run(app, push=push, force=force, allow_partial=allow_partial, max_age=None, fmt=fmt)


@images.command()
@matrix_options
@workdir_option
@click.option(
    "--max-age",
    type=click.IntRange(min=1),
    default=None,
    metavar="DAYS",
    help="Also rebuild images older than this.",
)
@click.option(
    "--allow-partial", is_flag=True, help="Publish a manifest list even when an arch failed."
)
@format_option
@pass_app
def refresh(app: App, *, max_age: int | None, allow_partial: bool, fmt: str) -> int:
    """The nightly job: rebuild what is stale, push, update the manifests."""
    return _run(
        app,
        push=True,
        force=False,
        allow_partial=allow_partial,
        max_age=timedelta(days=max_age) if max_age else None,
        fmt=fmt,
    )


def _run(
    app: App,
    *,
    push: bool,
    force: bool,
    allow_partial: bool,
    max_age: timedelta | None,
    fmt: str = "table",
) -> int:
    console = app.err if fmt == "json" else app.console  # stdout is the JSON's
    with (
        LiveProgress(console, 0, "images", quiet=app.verbosity < 0) as progress,
        signals_cancel() as cancel,
    ):
        report = run_images(
            app.matrix,
            app.pool,
            app.platforms,
            app.layout,
            options=ImagesOptions(
                force=force, push=push, allow_partial=allow_partial, max_age=max_age
            ),
            cancel=cancel,
            progress=progress,
        )
    _summary(app, report, fmt)
    raise_if_cancelled(cancel)
    return EXIT_FAILED if report.failed or any(r.status == "held" for r in report.releases) else 0


def _summary(app: App, report: ImagesReport, fmt: str) -> None:
    data = {
        "images": [r.as_dict() for r in report.results],
        "manifests": [m.as_dict() for m in report.releases],
    }
    if fmt == "json":
        echo_json(data)
    else:
        _table(app, report)
    _save(app, data)


def _table(app: App, report: ImagesReport) -> None:
    click.echo("")
    print_rows(
        app,
        ("platform", "outcome", "duration", "engine", "mode", "log"),
        [
            (
                r.platform,
                r.status,
                f"{r.duration:.1f}s",
                r.engine or "-",
                ("emulated" if r.emulated else "native") if r.engine else "-",
                r.log or r.reason,
            )
            for r in report.results
        ],
    )
    for r in report.failed:
        click.echo(f"{r.platform}: {r.reason}", err=True)
    for r in report.results:
        if r.in_place:
            _changes(r)
    for release in report.releases:
        text = f"manifest {release.tag}: {release.status} ({', '.join(release.arches)})"
        if release.missing:
            text += f"; missing {', '.join(release.missing)}"
            if release.status == "held":
                text += " (use --allow-partial to publish the others)"
        click.echo(text)


def _changes(result: ImageResult) -> None:
    """What a refresh in place changed: package, old version -> new version."""
    count = len(result.changes)
    click.echo(f"{result.platform}: refreshed in place, {count or 'no'} package(s) changed")
    for change in result.changes:
        click.echo(f"  {change}")


def _save(app: App, data: Mapping[str, object]) -> None:
    write_text_atomic(app.workdir / "images-report.json", json.dumps(data, indent=1))
