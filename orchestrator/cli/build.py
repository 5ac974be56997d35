"""`orchestrate build`: the main job."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.errors import EXIT_CONFLICT, EXIT_FAILED
from orchestrator.progress import Progress
from orchestrator.report.data import report_of, save_run_report, write_report
from orchestrator.report.html import write_html
from orchestrator.wheels.pipeline import BuildOptions, BuildRun, emulated_seconds, run_build

from .app import (
    App,
    matrix_options,
    pass_app,
    print_rows,
    raise_if_cancelled,
    signals_cancel,
    workdir_option,
)
from .plan import FILE, requirement_options


@click.command()
@matrix_options
@requirement_options
@workdir_option
@click.option("--report", "report_path", type=FILE, help="Also write the JSON report here.")
@click.option(
    "--emulate-when-busy",
    is_flag=True,
    help="Use emulating engines when native ones are saturated.",
)
@click.option("--fail-fast", is_flag=True, help="Stop scheduling after the first failure.")
@click.option("--keep-failed", is_flag=True, help="Keep failed containers for inspection.")
@click.option(
    "--replace", is_flag=True, help="Replace a published wheel whose rebuild gave different bytes."
)
@click.option("--timeout", type=click.FloatRange(min=1), help="Seconds per job.")
@pass_app
def build(
    app: App,
    requirements: tuple[Path, ...],
    constraints: tuple[Path, ...],
    resolve_latest: bool,
    report_path: Path | None,
    emulate_when_busy: bool,
    fail_fast: bool,
    keep_failed: bool,
    replace: bool,
    timeout: float | None,
) -> int:
    """Build every wheel the plan says is missing, then publish the index."""
    options = BuildOptions(
        app.workdir, emulate_when_busy, fail_fast, keep_failed, replace, timeout, resolve_latest
    )
    with signals_cancel() as cancel, Progress(app.console, 0, "jobs") as progress:
        run = run_build(
            app.matrix,
            app.pool,
            app.platforms,
            requirements,
            constraints,
            options,
            cancel,
            progress.event,
        )
    report = report_of(run, str(app.matrix_path))
    saved = save_run_report(report, app.workdir)
    write_html(report, saved.with_suffix(".html"))
    if report_path is not None:
        write_report(report, report_path)
    _summary(app, run, saved)
    raise_if_cancelled(cancel)
    if run.failed or run.publish_errors or run.images.failed:
        return EXIT_FAILED
    return EXIT_CONFLICT if run.mismatches else 0


def _summary(app: App, run: BuildRun, report: Path) -> None:
    click.echo("")
    rows = [
        (
            j.platform,
            f"{j.name}=={j.version}",
            j.status,
            f"{j.duration:.1f}s",
            j.engine + (" (emulated)" if j.emulated else ""),
            j.wheel or j.detail,
        )
        for j in run.jobs
    ]
    if rows:
        print_rows(app, ("platform", "requirement", "status", "time", "engine", "wheel"), rows)
    for job in run.failed:
        click.echo(f"FAILED {job.job}: {job.detail} (log: {job.log})", err=True)
    for m in run.mismatches:
        click.echo(
            f"NOT REPRODUCIBLE {m.filename}: published sha256 {m.published_sha256}, "
            f"rebuilt {m.new_sha256}; the published wheel stays (--replace to change)",
            err=True,
        )
    for platform, error in run.publish_errors.items():
        click.echo(f"publish of {platform} failed: {error}", err=True)
    count = {a: sum(1 for d in run.plan if d.action.value == a) for a in ("upstream", "cached")}
    built = sum(1 for j in run.jobs if j.status in ("built", "shared"))
    click.echo(
        f"built {built}, failed {len(run.failed)}, upstream {count['upstream']}, "
        f"cached {count['cached']}, emulated time {emulated_seconds(run):.0f}s; "
        f"published {', '.join(p.platform + ':' + p.status for p in run.published)}"
    )
    click.echo(f"report: {report} and {report.with_suffix('.html')}")
