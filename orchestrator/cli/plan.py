"""`orchestrate plan`: what needs a wheel on which platform, decided before building."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import click

from orchestrator.cli.app import App, F, format_option, matrix_options, pass_app, print_rows
from orchestrator.core.errors import EXIT_FAILED
from orchestrator.core.redact import redact
from orchestrator.jobs.durations import Durations
from orchestrator.model import Action
from orchestrator.plan.decide import Decision, missing_pins
from orchestrator.plan.gather import make_plan
from orchestrator.plan.planfile import PlanFile, file_digests, make_plan_file
from orchestrator.plan.shards import github_matrix, shards_of
from orchestrator.plan.upstream import Upstream
from orchestrator.publish.release import now
from orchestrator.report.data import write_text_atomic

FILE = click.Path(path_type=Path, dir_okay=False)


def requirement_options(func: F) -> F:
    func = click.option(
        "--allow-unavailable",
        is_flag=True,
        help="Pins the index does not have (typos, versions that never existed) are "
        "reported but do not make the exit code 1.",
    )(func)
    func = click.option(
        "--resolve-latest", is_flag=True, help="Pin unpinned requirements to the latest release."
    )(func)
    func = click.option(
        "-c",
        "--constraint",
        "constraints",
        multiple=True,
        type=FILE,
        help="A constraints file (repeatable).",
    )(func)
    return click.option(
        "-r",
        "--requirement",
        "requirements",
        multiple=True,
        type=FILE,
        help="A requirements file (repeatable). Without one, the matrix's branches: "
        "every branch on the platforms it names, in one run.",
    )(func)


@click.command()
@matrix_options
@requirement_options
@format_option
@click.option("--output", "-o", type=FILE, help="Write the plan here (only when it succeeds).")
@click.option(
    "--shards",
    is_flag=True,
    help="Print the night's shards (one CI job each) as JSON for GitHub Actions' "
    'strategy.matrix: {"include": [...]}, the shards with nothing to build left out.',
)
@click.option(
    "--save-plan",
    type=FILE,
    help="Write the plan file the shards build from (`build --plan`) and the merge checks.",
)
@pass_app
def plan(  # noqa: PLR0913 - click passes each of its options as a parameter
    app: App,
    *,
    requirements: tuple[Path, ...],
    constraints: tuple[Path, ...],
    resolve_latest: bool,
    allow_unavailable: bool,
    fmt: str,
    output: Path | None,
    shards: bool,
    save_plan: Path | None,
) -> int:
    """Decide per platform which pinned requirements need a wheel built."""
    result = make_plan(
        app.matrix,
        app.platforms,
        requirements,
        constraints,
        resolve_latest=resolve_latest,
        upstream=Upstream.of(app.matrix.index.upstream_index, app.layout.index_cache),
        probed=app.probed(),
        builders=app.builders(),
    )
    for notice in result.notices:
        click.echo(f"notice: {notice}", err=True)
    if shards or save_plan is not None:
        made = plan_file_of(app, result.decisions, [*requirements, *constraints])
        if save_plan is not None:
            _write_atomic(save_plan, json.dumps(made.as_dict(), indent=1) + "\n")
        if shards:
            click.echo(json.dumps(github_matrix(made.shards)))
            return missing_exit(result.decisions, allow_unavailable=allow_unavailable)
    text = json.dumps([d.as_dict() for d in result.decisions], indent=1) if fmt == "json" else None
    if output is not None:
        _write_atomic(output, text or json.dumps([d.as_dict() for d in result.decisions]))
    if text is not None:
        click.echo(text)
        return missing_exit(result.decisions, allow_unavailable=allow_unavailable)
    print_summary(app, result.decisions)
    stats = result.stats
    app.err.print(
        f"index: {stats.requests} requests, {stats.fresh_hits} from cache, "
        f"{stats.not_modified} not modified, {stats.retries} retries"
    )
    return missing_exit(result.decisions, allow_unavailable=allow_unavailable)


def plan_file_of(app: App, decisions: Sequence[Decision], inputs: Sequence[Path]) -> PlanFile:
    """The plan as a file the shards build from, with its shards."""
    expected = Durations(app.layout.durations).expected
    return make_plan_file(
        matrix=app.matrix.digest,
        inputs=file_digests(inputs),
        platforms=[p.name for p in app.platforms],
        decisions=decisions,
        shards=shards_of(decisions, app.platforms, app.matrix.runners, expected),
        created=now(),
    )


def branch_rows(decisions: list[Decision]) -> list[tuple[str, ...]]:
    """Per branch and platform, how many of its pins are in each action: a pin that
    several branches share counts in each (it is still built once)."""
    counts = Counter((b, d.platform, d.python, d.action) for d in decisions for b in d.branches)
    order = list(dict.fromkeys(b for d in decisions for b in d.branches))
    keys = sorted({k[:3] for k in counts}, key=lambda k: (order.index(k[0]), k[1], k[2]))
    return [(*k, *(str(counts[(*k, a)]) for a in Action)) for k in keys]


def missing_exit(decisions: list[Decision], *, allow_unavailable: bool) -> int:
    """Exit 1 listing the pins the index does not have, unless --allow-unavailable."""
    missing = missing_pins(decisions)
    for d in missing:
        click.echo(f"not on the index: {d.name}=={d.version} ({d.source}): {d.reason}", err=True)
    if missing and not allow_unavailable:
        click.echo(
            f"{len(missing)} pin(s) the index does not have; fix them, or pass --allow-unavailable",
            err=True,
        )
        return EXIT_FAILED
    return 0


def print_summary(app: App, decisions: list[Decision]) -> None:
    counts = Counter((d.platform, d.python, d.action) for d in decisions)
    keys = sorted({(d.platform, d.python) for d in decisions})
    actions = list(Action)
    rows = [(p, py, *(str(counts[(p, py, a)]) for a in actions)) for p, py in keys]
    print_rows(app, ("platform", "python", *(a.value for a in actions)), rows)
    if any(d.branches for d in decisions):
        click.echo("")
        print_rows(
            app,
            ("branch", "platform", "python", *(a.value for a in actions)),
            branch_rows(decisions),
        )
    todo = [
        d
        for d in decisions
        if d.action in (Action.BUILD, Action.REBUILD, Action.UNAVAILABLE, Action.UNSUPPORTED)
    ]
    if todo:
        click.echo("")
        branched = any(d.branches for d in todo)
        print_rows(
            app,
            ("platform", "python", "requirement", "action", "reason")
            + (("branches",) if branched else ()),
            [
                (
                    d.platform,
                    d.python,
                    f"{d.name}=={d.version}" if d.version else d.name,
                    d.action.value,
                    d.reason,
                )
                + ((" ".join(d.branches),) if branched else ())
                for d in todo
            ],
        )


def _write_atomic(path: Path, text: str) -> None:
    """A plan output: a CI artifact, so redacted as every other output is."""
    write_text_atomic(path, redact(text))
