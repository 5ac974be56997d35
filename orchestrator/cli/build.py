"""`orchestrate build`: the main job."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from orchestrator.bundle import BundleContents, check_target, write_bundle
from orchestrator.cli.app import (
    App,
    F,
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
from orchestrator.cli.plan import FILE, missing_exit, plan_file_of, requirement_options
from orchestrator.cli.progress import LiveProgress
from orchestrator.config.matrix import Platform, expand
from orchestrator.core.errors import (
    EXIT_CONFLICT,
    EXIT_FAILED,
    InputError,
    OrchestrateError,
)
from orchestrator.core.quoting import printable
from orchestrator.jobs.execute import emulated_by_arch, emulated_seconds
from orchestrator.jobs.records import WheelRecord
from orchestrator.model import JobStatus
from orchestrator.plan.gather import check_something_to_plan
from orchestrator.plan.planfile import PlanFile, load_plan
from orchestrator.plan.shards import Shard
from orchestrator.report.ci import write_junit, write_metrics
from orchestrator.report.data import report_of, save_run_report, with_previous, write_report
from orchestrator.report.html import write_html
from orchestrator.run import BuildOptions, NightRequest, NightResult, run_build
from orchestrator.scheduler import Cancel
from orchestrator.store import Store


def report_options(func: F) -> F:
    """--report, --junit-xml and --metrics: the night's report in other places and forms."""
    func = click.option(
        "--metrics",
        "metrics_path",
        type=FILE,
        help="Also write Prometheus text-format metrics (node_exporter's textfile collector).",
    )(func)
    func = click.option(
        "--junit-xml",
        "junit_path",
        type=FILE,
        help="Also write JUnit XML: one test case per job, failures with their log.",
    )(func)
    return click.option(
        "--report", "report_path", type=FILE, help="Also write the JSON report here."
    )(func)


@click.command()
@matrix_options
@requirement_options
@workdir_option
@report_options
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
    "--plan",
    "plan_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Build the decisions of this plan file (`plan --save-plan`) instead of planning: "
    "every shard of a night builds the same decisions.",
)
@click.option("--shard", help="Build this shard of the --plan file (its platforms).")
@click.option(
    "--bundle",
    type=click.Path(path_type=Path, file_okay=False),
    help="Publish nothing: write the wheels, records, logs and report to this new folder, "
    "for `orchestrate merge` (a CI artifact).",
)
@format_option
@pass_app
def build(  # noqa: PLR0913 - click passes each of its options as a parameter
    app: App,
    *,
    requirements: tuple[Path, ...],
    constraints: tuple[Path, ...],
    resolve_latest: bool,
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
    plan_path: Path | None,
    shard: str | None,
    bundle: Path | None,
    fmt: str,
) -> int:
    """Build every wheel the plan says is missing, then publish the index (or, with
    --bundle, hand it to `orchestrate merge`)."""
    chosen = shard_of(app, plan_path, shard)
    check_inputs(app, chosen.plan, requirements, bundle)
    options = BuildOptions(
        emulate_when_busy=emulate_when_busy,
        fail_fast=fail_fast,
        keep_failed=keep_failed,
        replace=replace,
        timeout=timeout,
        resolve_latest=resolve_latest,
        deadline=deadline,
        build_constraints=_constraint_lines(app, build_constraints),
    )
    inputs = (*requirements, *constraints)
    request = chosen.request(app, (requirements, constraints), options, publish=bundle is None)
    outcome, cancel = _run(app, request)
    paths = ReportPaths(json=report_path, junit=junit_path, metrics=metrics_path)
    report, saved = write_reports(app, outcome, paths)
    if bundle is not None:  # what finished, even when something stopped the night
        made = chosen.plan or plan_file_of(app, outcome.plan, inputs)
        hand_over(app, outcome, report, ShardBundle(folder=bundle, plan=made, shard=shard))
    _show(app, outcome, (report, saved), fmt=fmt)
    raise_if_cancelled(cancel)
    return exit_code(outcome, allow_unavailable=allow_unavailable)


def _show(
    app: App, outcome: NightResult, reports: tuple[dict[str, Any], Path], *, fmt: str
) -> None:
    """The night's summary; what stopped the night raised instead, with its exit code."""
    if outcome.stopped is not None:
        raise outcome.stopped
    report, saved = reports
    if fmt == "json":
        echo_json(json_summary(outcome, report, saved))
    else:
        night_summary(app, outcome, saved)


def check_inputs(
    app: App, given: PlanFile | None, requirements: tuple[Path, ...], bundle: Path | None
) -> None:
    """What can be refused before an hour of building."""
    if given is None:
        check_something_to_plan(app.matrix, requirements)
    if bundle is not None:
        check_target(bundle)


@dataclass(frozen=True, kw_only=True)
class Selection:
    """What a build builds from: a plan file and its shard, if any, and the platforms."""

    plan: PlanFile | None
    shard: Shard | None
    platforms: tuple[Platform, ...]

    def request(
        self,
        app: App,
        inputs: tuple[tuple[Path, ...], tuple[Path, ...]],
        options: BuildOptions,
        *,
        publish: bool,
    ) -> NightRequest:
        """The night this selection builds from `inputs` (requirements, constraints)."""
        return NightRequest(
            matrix=app.matrix,
            platforms=self.platforms,
            plan=self.plan,
            shard=self.shard,
            publish=publish,
            requirements=inputs[0],
            constraints=inputs[1],
            options=options,
            layout=app.layout,
        )


def shard_of(app: App, plan_path: Path | None, shard: str | None) -> Selection:
    """The plan file to build from, if any, and the platforms: the shard's, or those
    --platform selects (which the plan must cover)."""
    if plan_path is None:
        if shard is not None:
            raise InputError("--shard names a shard of a plan file: pass --plan too")
        return Selection(plan=None, shard=None, platforms=app.platforms)
    plan = load_plan(plan_path)
    if plan.matrix != app.matrix.digest:
        raise InputError(
            f"{plan_path}: made from another matrix (sha256 {plan.matrix[:12]}; "
            f"{app.matrix_path} is {app.matrix.digest[:12]})",
            hint="build with the matrix the plan job used",
        )
    if shard is not None and app.patterns:
        raise InputError("pass --shard or --platform, not both")
    chosen = plan.shard(shard) if shard is not None else None
    wanted = chosen.platforms if chosen is not None else None
    every = expand(app.matrix)
    platforms = tuple(p for p in every if p.name in wanted) if wanted else app.platforms
    outside = [p.name for p in platforms if p.name not in plan.platforms]
    if outside:
        raise InputError(f"{plan_path}: the plan does not cover {', '.join(outside)}")
    return Selection(plan=plan, shard=chosen, platforms=platforms)


@dataclass(frozen=True, kw_only=True)
class ShardBundle:
    folder: Path
    plan: PlanFile
    shard: str | None  # default: the plan's shard of the night's platforms


def hand_over(app: App, outcome: NightResult, report: dict[str, Any], to: ShardBundle) -> None:
    """The shard's night as a bundle, for `orchestrate merge`."""
    platforms = [p for p in expand(app.matrix) if p.name in outcome.platforms]
    write_bundle(
        to.folder,
        BundleContents(
            shard=to.shard or shard_name(to.plan, platforms),
            plan=to.plan,
            report=report,
            jobs=outcome.jobs,
            wheel_dir={j.job: app.layout.job_dir(j.job) for j in outcome.jobs},
        ),
    )
    if app.verbosity >= 0:
        click.echo(f"bundle: {to.folder} (for `orchestrate merge`; nothing was published)")


def shard_name(plan: PlanFile, platforms: Sequence[Platform]) -> str:
    """The plan's shard of exactly these platforms; else their names joined."""
    names = {p.name for p in platforms}
    for shard in plan.shards:
        if set(shard.platforms) == names:
            return shard.name
    return "+".join(sorted(names))


def _run(app: App, request: NightRequest) -> tuple[NightResult, Cancel]:
    """The night, with live progress; SIGINT and SIGTERM cancel it (what finished is kept)."""
    log_of = app.layout.job_log if app.verbosity > 0 else None
    with (
        signals_cancel() as cancel,
        LiveProgress(app.console, 0, "jobs", log_of, quiet=app.verbosity < 0) as progress,
    ):
        outcome = run_build(request, pool=app.pool, cancel=cancel, progress=progress)
    return outcome, cancel


def exit_code(outcome: NightResult, *, allow_unavailable: bool) -> int:
    """The night's one exit code: the store's or the disk's error first (4 or 3), then
    pins the index lacks, failed jobs, images or platforms (1), then mismatches (4)."""
    if outcome.publish.error is not None:
        raise outcome.publish.error
    if missing_exit(list(outcome.plan), allow_unavailable=allow_unavailable):
        return EXIT_FAILED
    if outcome.failed or outcome.publish_errors or outcome.images.failed:
        return EXIT_FAILED
    return EXIT_CONFLICT if outcome.mismatches else 0


def _constraint_lines(app: App, files: tuple[Path, ...]) -> tuple[str, ...]:
    """The build constraint lines of the matrix's file and of --build-constraint files
    (checked once, when the night starts)."""
    configured = app.matrix.builder.build_constraints
    paths = [configured] if configured else []
    lines: list[str] = []
    for path in [*paths, *files]:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read the build constraints: {exc}") from None
        lines += [line.strip() for line in text.splitlines() if line.split("#")[0].strip()]
    return tuple(lines)


@dataclass(frozen=True, kw_only=True)
class ReportPaths:
    json: Path | None = None
    junit: Path | None = None
    metrics: Path | None = None


def write_reports(
    app: App, outcome: NightResult, paths: ReportPaths
) -> tuple[dict[str, Any], Path]:
    """The night's report, once: saved with its HTML page, and wherever asked."""
    report = with_previous(report_of(outcome, str(app.matrix_path.resolve())), app.layout.reports)
    saved = save_run_report(report, app.layout.reports)
    if paths.json is not None:
        write_report(report, paths.json)
    if paths.junit is not None:
        write_junit(report, paths.junit)
    if paths.metrics is not None:
        write_metrics(report, _index_sizes(app, outcome), paths.metrics)
    write_html(report, saved.with_suffix(".html"))  # last: the JSON reports stand first
    return report, saved


def _index_sizes(app: App, run: NightResult) -> dict[str, tuple[int, int]]:
    """(wheels, bytes) our index serves per platform, from the store's manifest."""
    try:
        records = Store(app.matrix.index.published.root).records().values()
    except OrchestrateError:
        return {}
    return {
        p: (
            sum(1 for r in records if p in r.platforms),
            sum(r.size for r in records if p in r.platforms),
        )
        for p in run.platforms
    }


def json_summary(run: NightResult, report: dict[str, Any], saved: Path) -> dict[str, object]:
    return {
        "run_id": run.run_id,
        "summary": report["summary"],
        "failed": [
            {
                "job": j.job,
                "status": j.status,
                "category": j.category,
                "error": j.error,
                "hint": j.hint,
                "log": j.log,
            }
            for j in run.failed
        ],
        "mismatches": [m.filename for m in run.mismatches],
        "publish_errors": run.publish_errors,
        "published": {p.platform: p.release for p in run.published},
        "report": str(saved),
    }


def _failures(failed: Sequence[WheelRecord]) -> None:
    """Each failure with its hint; the jobs never started, once per reason."""
    unstarted: dict[str, list[str]] = {}
    for job in failed:
        if job.status is JobStatus.CANCELLED:
            unstarted.setdefault(printable(job.error), []).append(printable(job.job))
            continue
        said = f"{job.job} [{job.category}]: {job.error} (log: {job.log})"
        click.echo(f"FAILED {printable(said)}", err=True)
        if job.hint:
            click.echo(f"  hint: {printable(job.hint)}", err=True)
    for why, jobs in unstarted.items():
        named = ", ".join(jobs[:5]) + (f" and {len(jobs) - 5} more" if len(jobs) > 5 else "")
        click.echo(f"NOT BUILT {len(jobs)} job(s), {why}: {named}", err=True)


def summary_line(run: NightResult) -> str:
    """The night in one line: what each job came to, what the plan served, where."""
    count = {a: sum(1 for d in run.plan if d.action.value == a) for a in ("upstream", "cached")}
    status = Counter(j.status for j in run.jobs)
    failed = status[JobStatus.FAILED] + status[JobStatus.TIMEOUT] + status[JobStatus.SMOKE_FAILED]
    by_arch = emulated_by_arch(run.jobs)
    arches = f" ({', '.join(f'{a} {s:.0f}s' for a, s in by_arch.items())})" if by_arch else ""
    published = ", ".join(p.platform + ":" + p.status for p in run.published)
    return (
        f"built {status[JobStatus.BUILT]}, shared {status[JobStatus.SHARED]}, failed {failed}, "
        f"not started {status[JobStatus.CANCELLED]}, "
        f"upstream {count['upstream']}, cached {count['cached']}, "
        f"emulated time {emulated_seconds(run.jobs):.0f}s{arches}; "
        f"published {published or 'nothing'}"
    )


def night_summary(app: App, run: NightResult, report: Path) -> None:
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
    _failures(run.failed)
    for m in run.mismatches:
        click.echo(
            f"NOT REPRODUCIBLE {printable(m.filename)}: published sha256 {m.published_sha256}, "
            f"rebuilt {m.new_sha256}; the published wheel stays (--replace to change)",
            err=True,
        )
    for r in run.store:
        if r.outcome == "rebuilt":  # what moved is in the plan's reason and the report
            click.echo(f"rebuilt: {r.filename} (new bytes: the next build tag)")
    for platform, error in run.publish_errors.items():
        click.echo(f"publish of {platform} failed: {printable(error)}", err=True)
    click.echo(summary_line(run))
    if app.verbosity >= 0:
        click.echo(f"report: {report} and {report.with_suffix('.html')}")
