"""`orchestrate publish|prune|rollback|serve`: the wheel index."""

from __future__ import annotations

import dataclasses

import click
from packaging.utils import canonicalize_name, canonicalize_version

from orchestrator.cli.app import App, echo_json, format_option, matrix_options, pass_app, print_rows
from orchestrator.config.matrix import expand
from orchestrator.core.errors import EXIT_FAILED, EnvironmentProblem, InputError, SelectorError
from orchestrator.plan.gather import make_plan
from orchestrator.plan.upstream import Upstream
from orchestrator.publish.index import publish as publish_index
from orchestrator.publish.index import rollback as rollback_index
from orchestrator.publish.prune import PruneCandidate, prune_candidates, unwanted_candidates
from orchestrator.publish.serve import serve_index
from orchestrator.store import Store


@click.command()
@matrix_options
@format_option
@click.option(
    "--adopt-root",
    is_flag=True,
    help="Publish into an index root that holds files orchestrate did not write "
    "(its index.html is replaced).",
)
@pass_app
def publish(app: App, *, fmt: str, adopt_root: bool) -> int:
    """Rebuild each platform's index from the store (unchanged ones are skipped).

    A platform that fails keeps serving its previous release; the others are
    published anyway, and the exit code is 1.
    """
    results = publish_index(
        Store(app.matrix.index.published.root),
        [p.name for p in app.platforms],
        keep=app.matrix.index.published.keep_releases,
        adopt=adopt_root,
    )
    if fmt == "json":
        echo_json([dataclasses.asdict(r) for r in results])
    else:
        print_rows(
            app,
            ("platform", "status", "release", "wheels", "projects"),
            [(r.platform, r.status, r.release, str(r.wheels), str(r.projects)) for r in results],
        )
    failed = [r for r in results if r.status == "failed"]
    for r in failed:
        click.echo(f"publish of {r.platform} failed: {r.error}", err=True)
    if any(r.environment for r in failed):
        raise EnvironmentProblem(
            f"publishing under {app.matrix.index.published.root} failed on the disk side "
            "(full, read-only or not permitted); the failed platforms keep their release",
            hint="free space or fix the permissions, then run `orchestrate publish` again",
        )
    return EXIT_FAILED if failed else 0


@click.command()
@matrix_options
@click.option("--dry-run", is_flag=True, help="List what would go, and what replaces it.")
@click.option(
    "--unwanted",
    is_flag=True,
    help="Instead: remove wheels that no branch of the matrix wants on their platform any more.",
)
@format_option
@pass_app
def prune(app: App, *, dry_run: bool, unwanted: bool, fmt: str) -> None:
    """Remove wheels whose exact version the upstream index now serves."""
    store = Store(app.matrix.index.published.root)
    upstream = Upstream.of(app.matrix.index.upstream_index, app.layout.index_cache)
    if unwanted:
        found = _unwanted(app, store, upstream)
    else:
        found = prune_candidates(app.matrix, store, app.platforms, upstream, probed=app.probed())
    if fmt == "json":
        echo_json({"dry_run": dry_run, "wheels": [dataclasses.asdict(c) for c in found]})
    else:
        print_rows(  # the default columns stay as they were: scripts read them
            app,
            ("platform", "our wheel", "why" if unwanted else "upstream replacement"),
            [(c.platform, c.filename, c.reason if unwanted else c.upstream) for c in found],
        )
    if dry_run or not found:
        if fmt != "json":
            click.echo(f"{len(found)} wheel(s) {'would be' if dry_run else 'to be'} pruned")
        return
    with store.locked() as records:
        for c in found:
            store.remove_platform(records, c.key, c.platform)
    publish_index(
        store, sorted({c.platform for c in found}), keep=app.matrix.index.published.keep_releases
    )
    if fmt != "json":
        click.echo(f"pruned {len(found)} wheel(s) and republished")


def _unwanted(app: App, store: Store, upstream: Upstream) -> list[PruneCandidate]:
    """What the branches' plan (every branch, on its platforms) no longer has."""
    if not app.matrix.branches:
        raise InputError(
            "--unwanted needs branches: in the matrix, to know what is still wanted",
            hint="add the constraints sources under branches:, or prune without --unwanted",
        )
    plan = make_plan(
        app.matrix,
        app.platforms,
        (),
        (),
        resolve_latest=False,
        upstream=upstream,
        probed=app.probed(),
    )
    wanted = {
        (d.platform, canonicalize_name(d.name), canonicalize_version(d.version))
        for d in plan.decisions
    }
    return unwanted_candidates(store.records(), app.platforms, wanted)


@click.command()
@matrix_options
# Not named `platform`: the shared --platform option already takes that name.
@click.argument("platform_name", metavar="PLATFORM")
@click.option("--to", "release", help="A kept release id (default: the one before).")
@pass_app
def rollback(app: App, platform_name: str, release: str | None) -> None:
    """Point PLATFORM's index back at an earlier release."""
    known = [p.name for p in expand(app.matrix)]
    if platform_name not in known:
        raise SelectorError(
            f"{platform_name!r} is not a platform of {app.matrix_path}",
            hint=f"platforms: {', '.join(known)}",
        )
    chosen = rollback_index(app.matrix.index.published.root, platform_name, release)
    click.echo(f"{platform_name} now serves release {chosen}")


@click.command()
@matrix_options
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="TCP port (0: any free one, printed).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@pass_app
def serve(app: App, port: int, host: str) -> None:
    """Serve the published indexes (HTML, or JSON when asked for) on loopback."""
    serve_index(
        app.matrix.index.published.root, host, port, lambda url: click.echo(f"serving {url}")
    )
