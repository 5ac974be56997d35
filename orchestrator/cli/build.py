"""`orchestrate build`: the main job."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from orchestrator.build.builddeps import parse_constraints
from orchestrator.cli.app import (
    App,
    Seconds,
    echo_json,
    format_option,
    matrix_options,
    pass_app,
    print_rows,
    raise_if_cancelled,
    signals_cancel,
    workdir_option,
)
from orchestrator.cli.plan import FILE, missing_exit, requirement_options
from orchestrator.cli.progress import Progress
from orchestrator.core.errors import (
    EXIT_CONFLICT,
    EXIT_FAILED,
    EnvironmentProblem,
    InputError,
    OrchestrateError,
)
from orchestrator.plan.gather import check_something_to_plan
from orchestrator.report.ci import write_junit, write_metrics
from orchestrator.report.data import report_of, save_run_report, with_previous, write_report
from orchestrator.report.html import write_html
from orchestrator.run import (
    BuildOptions,
    BuildRun,
    emulated_by_arch,
    emulated_seconds,
    new_run,
    run_build,
)
from orchestrator.store import Store


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
@click.option("--timeout", type=Seconds(min=1), help="Seconds per job.")
@click.option(
    "--deadline",
    type=Seconds(min=1),
    help="Seconds from the start after which no new job starts; what finished is still "
    "stored, published and reported.",
)
@click.option(
    "--build-constraint",
    "build_constraints",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Constraints for build tools, e.g. 'Cython<3' (repeatable; adds to "
    "builder.build_constraints in the matrix).",
)
@click.option(
    "--junit-xml",
    "junit_path",
    type=FILE,
    help="Also write JUnit XML: one test case per job, failures with their log.",
)
@click.option(
    "--metrics",
    "metrics_path",
    type=FILE,
    help="Also write Prometheus text-format metrics (node_exporter's textfile collector).",
)
@format_option
@pass_app
def build(
    app: App,
    requirements: tuple[Path, ...],
    constraints: tuple[Path, ...],
    resolve_latest: bool,
    *,
    allow_unavailable: bool,
    report_path: Path | None,
    emulate_when_busy: bool,
    fail_fast: bool,
    keep_failed: bool,
    replace: bool,
    timeout: float | None,
    deadline: float | None,
    build_constraints: tuple[Path, ...],
    junit_path: Path | None,
    metrics_path: Path | None,
    fmt: str,
) -> int:
    """Build every wheel the plan says is missing, then publish the index."""
    check_something_to_plan(app.matrix, requirements)
    options = BuildOptions(
        emulate_when_busy,
        fail_fast,
        keep_failed,
        replace,
        timeout,
        resolve_latest,
        deadline,
        _constraint_lines(app, build_constraints),
    )
    run = new_run(app.layout, app.platforms)
    log_of = app.layout.job_log if app.verbosity > 0 else None
    with (
        signals_cancel() as cancel,
        Progress(app.console, 0, "jobs", log_of, quiet=app.verbosity < 0) as progress,
    ):
        try:
            run_build(
                run,
                app.matrix,
                app.pool,
                app.platforms,
                requirements=requirements,
                constraints=constraints,
                options=options,
                layout=app.layout,
                cancel=cancel,
                on_event=progress.event,
            )
        except OrchestrateError as exc:
            run.error = exc.message
            raise
        finally:  # a run that fails in the plan still leaves its report
            saved = _write_reports(app, run, report_path, junit_path, metrics_path=metrics_path)
    if fmt == "json":
        echo_json(_json_summary(run, saved))
    else:
        _summary(app, run, saved)
    raise_if_cancelled(cancel)
    if run.disk_error:
        raise EnvironmentProblem(
            f"storing or publishing under {app.matrix.index.root} failed on the disk side "
            "(full, read-only or not permitted); what was published before is still served",
            hint="free space or fix the permissions, then `orchestrate publish`",
        )
    if run.store_conflict:
        return EXIT_CONFLICT
    if missing_exit(run.plan, allow_unavailable):
        return EXIT_FAILED
    if run.failed or run.publish_errors or run.images.failed:
        return EXIT_FAILED
    return EXIT_CONFLICT if run.mismatches else 0


def _constraint_lines(app: App, files: tuple[Path, ...]) -> tuple[str, ...]:
    configured = app.matrix.builder.build_constraints
    paths = [configured] if configured else []
    lines: list[str] = []
    for path in [*paths, *files]:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read the build constraints: {exc}") from None
        lines += [line.strip() for line in text.splitlines() if line.split("#")[0].strip()]
    parse_constraints(lines, ", ".join(str(p) for p in [*paths, *files]))  # refuse bad lines now
    return tuple(lines)


def _write_reports(
    app: App,
    run: BuildRun,
    report_path: Path | None,
    junit_path: Path | None = None,
    *,
    metrics_path: Path | None = None,
) -> Path:
    report = with_previous(report_of(run, str(app.matrix_path.resolve())), app.layout.reports)
    saved = save_run_report(report, app.layout.reports)
    if report_path is not None:
        write_report(report, report_path)
    if junit_path is not None:
        write_junit(report, junit_path)
    if metrics_path is not None:
        write_metrics(report, _index_sizes(app, run), metrics_path)
    write_html(report, saved.with_suffix(".html"))  # last: the JSON reports stand first
    return saved


def _index_sizes(app: App, run: BuildRun) -> dict[str, tuple[int, int]]:
    """(wheels, bytes) our index serves per platform, from the store's manifest."""
    try:
        records = Store(app.matrix.index.root).records().values()
    except OrchestrateError:
        return {}
    return {
        p: (
            sum(1 for r in records if p in r.platforms),
            sum(r.size for r in records if p in r.platforms),
        )
        for p in run.platforms
    }


def _json_summary(run: BuildRun, saved: Path) -> dict[str, object]:
    summary = report_of(run, "")["summary"]
    return {
        "run_id": run.run_id,
        "summary": summary,
        "failed": [
            {"job": j.job, "status": j.status, "category": j.category, "error": j.error,
             "hint": j.hint, "log": j.log}
            for j in run.failed
        ],
        "mismatches": [m.filename for m in run.mismatches],
        "publish_errors": run.publish_errors,
        "published": {p.platform: p.release for p in run.published},
        "report": str(saved),
    }  # fmt: skip


def _summary(app: App, run: BuildRun, report: Path) -> None:
    if app.verbosity >= 0:
        click.echo("")
    rows = [
        (
            j.platform,
            j.job.split("/", 1)[1],
            j.status,
            f"{j.duration:.1f}s",
            j.engine + (f" ({j.mode or 'emulated'})" if j.emulated else ""),
            j.wheel or (j.category or ""),
        )
        for j in run.jobs
    ]
    if rows:
        print_rows(app, ("platform", "requirement", "status", "time", "engine", "wheel"), rows)
    for job in run.failed:
        click.echo(f"FAILED {job.job} [{job.category}]: {job.error} (log: {job.log})", err=True)
        if job.hint:
            click.echo(f"  hint: {job.hint}", err=True)
    for m in run.mismatches:
        click.echo(
            f"NOT REPRODUCIBLE {m.filename}: published sha256 {m.published_sha256}, "
            f"rebuilt {m.new_sha256}; the published wheel stays (--replace to change)",
            err=True,
        )
    for r in run.store:
        if r.outcome == "rebuilt":  # what moved is in the plan's reason and the report
            click.echo(f"rebuilt: {r.filename} (new bytes: the next build tag)")
    for platform, error in run.publish_errors.items():
        click.echo(f"publish of {platform} failed: {error}", err=True)
    count = {a: sum(1 for d in run.plan if d.action.value == a) for a in ("upstream", "cached")}
    status = Counter(str(j.status) for j in run.jobs)
    by_arch = emulated_by_arch(run.jobs)
    arches = f" ({', '.join(f'{a} {s:.0f}s' for a, s in by_arch.items())})" if by_arch else ""
    click.echo(
        f"built {status['built']}, shared {status['shared']}, failed {len(run.failed)}, "
        f"upstream {count['upstream']}, cached {count['cached']}, "
        f"emulated time {emulated_seconds(run.jobs):.0f}s{arches}; "
        f"published {', '.join(p.platform + ':' + p.status for p in run.published)}"
    )
    if app.verbosity >= 0:
        click.echo(f"report: {report} and {report.with_suffix('.html')}")
