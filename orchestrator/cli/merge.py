"""`orchestrate merge`: the shards' bundles of a night, stored and published once."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.cli.app import (
    App,
    echo_json,
    format_option,
    matrix_option,
    pass_app,
    workdir_option,
)
from orchestrator.cli.build import (
    ReportPaths,
    exit_code,
    json_summary,
    night_summary,
    report_options,
    write_reports,
)
from orchestrator.core.errors import EXIT_FAILED
from orchestrator.merge import MergeOptions, MergeRequest, merge_night
from orchestrator.plan.planfile import load_plan


@click.command()
@matrix_option
@click.argument("bundles", nargs=-1, type=click.Path(path_type=Path, file_okay=False, exists=False))
@click.option(
    "--plan",
    "plan_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The night's plan file: the shards it wanted are expected, and a bundle of "
    "another plan is refused [default: the newest plan the bundles carry].",
)
@click.option("--allow-stale", is_flag=True, help="Merge bundles of an older night's plan too.")
@click.option("--replace", is_flag=True, help="A wheel whose bytes differ replaces the stored one.")
@click.option(
    "--prefer",
    type=click.Path(path_type=Path, file_okay=False),
    help="When two bundles give one pure wheel different bytes, this bundle's win "
    "[default: both are refused].",
)
@report_options
@workdir_option
@format_option
@pass_app
def merge(  # noqa: PLR0913 - click passes each of its options as a parameter
    app: App,
    bundles: tuple[Path, ...],
    *,
    plan_path: Path | None,
    allow_stale: bool,
    replace: bool,
    prefer: Path | None,
    report_path: Path | None,
    junit_path: Path | None,
    metrics_path: Path | None,
    fmt: str,
) -> int:
    """Verify the shards' bundles, store their wheels and publish every platform.

    A bundle that is tampered with, cut short, of another matrix or plan is refused
    (exit 2 or 4) before anything is stored. A shard the plan wanted and no bundle
    brought is named; its platforms keep their index (exit 1).
    """
    request = MergeRequest(
        matrix=app.matrix,
        bundles=bundles,
        layout=app.layout,
        plan=load_plan(plan_path) if plan_path is not None else None,
        options=MergeOptions(allow_stale=allow_stale, replace=replace, prefer=prefer),
    )
    outcome = merge_night(request)
    paths = ReportPaths(json=report_path, junit=junit_path, metrics=metrics_path)
    report, saved = write_reports(app, outcome, paths)
    if fmt == "json":
        echo_json({**json_summary(outcome, report, saved), "shards": report.get("shards", [])})
    else:
        night_summary(app, outcome, saved)
    for shard in outcome.missing_shards:
        click.echo(
            f"MISSING shard {shard.name}: no bundle came; "
            f"{', '.join(shard.platforms)} keep their published index",
            err=True,
        )
    code = exit_code(outcome, allow_unavailable=True)
    return code or (EXIT_FAILED if outcome.missing_shards else 0)
