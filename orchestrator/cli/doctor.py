"""`orchestrate doctor`: is this host ready for the matrix?"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import click

from orchestrator.cli.app import App, echo_json, format_option, matrix_options, pass_app, print_rows
from orchestrator.core.errors import (
    EXIT_ENVIRONMENT,
    EXIT_FAILED,
    EnvironmentProblem,
    InputError,
)
from orchestrator.doctor import run_doctor
from orchestrator.publish.indexcheck import check_index, reachable


@click.command(
    "setup-host",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def setup_host(args: tuple[str, ...]) -> int:
    """Set up this Debian or Ubuntu host (as root): Docker or Podman, QEMU, debootstrap, a registry.

    The same script as the repository's scripts/setup-host, shipped in the
    package: `orchestrate setup-host -- --test` passes --test on to it, and
    `orchestrate setup-host -- --help` shows its options. `-- --podman` sets up
    Podman instead of Docker; `-- --rootless[=USER]` runs Podman's service as
    an unprivileged user.
    """
    return _shipped_script("setup-host.sh", args)


NAMED_STEPS = ("shard", "shard-night", "release")  # the steps that take a shard's name


@click.command("ci-step")
@click.argument("step", type=click.Choice(["plan", "shard", "merge", *NAMED_STEPS[1:]]))
@click.argument("shard", required=False)
def ci_step(step: str, shard: str | None) -> int:
    """One job of a night on a CI system.

    The same steps on every CI system (deploy/steps/night, shipped in the package).
    One plan, many shards, one merge: plan restores the published state
    (ORCHESTRATE_STATE) and writes plan.json and shards.json; shard NAME builds that
    shard into bundle-NAME/ (and what planning learns into facts-NAME/); merge
    restores the state, merges every bundle-*/ and, when the merge published (exit 0
    or 1), puts the state back. Each shard on its own state (Zuul's per-platform
    jobs): shard-night NAME restores ORCHESTRATE_STATE/NAME, plans, builds and
    publishes locally; release NAME puts it back. MATRIX and REQUIREMENTS name the
    inputs.
    """
    if (step in NAMED_STEPS) != (shard is not None):
        raise InputError(
            f"`ci-step {step}` takes "
            + ("a shard's name" if step in NAMED_STEPS else "no shard's name")
        )
    env = {**os.environ, "ORCHESTRATE_PYTHON": sys.executable}
    return _shipped_script("ci-step.sh", (step, *([shard] if shard else [])), env=env)


def _shipped_script(name: str, args: tuple[str, ...], env: dict[str, str] | None = None) -> int:
    script = Path(__file__).resolve().parents[1] / name
    if not script.is_file():
        raise EnvironmentProblem(f"{script} is missing from this installation")
    return subprocess.run(["bash", str(script), *args], check=False, env=env).returncode


@click.command()
@matrix_options
@click.option(
    "--index",
    "index_url",
    metavar="URL",
    help="Check a published index as a client reads it, instead of this host: an index "
    "root (all its platforms) or one <platform>/simple/ URL. Exit 1 when a client would "
    "fail on it, 3 when it cannot be read.",
)
@format_option
@pass_app
def doctor(app: App, index_url: str | None, fmt: str) -> int:
    """Report engines, emulation, registry, index and tools; exit 3 if one is missing."""
    if index_url is not None:
        checks = check_index(index_url)
        failed = EXIT_ENVIRONMENT if not reachable(checks) else EXIT_FAILED
    else:
        checks = run_doctor(app.matrix, app.pool, app.platforms)
        failed = EXIT_ENVIRONMENT
    missing = [c for c in checks if c.required and not c.ok]
    if fmt == "json":
        echo_json([dataclasses.asdict(c) for c in checks])
        return failed if missing else 0
    rows = [
        (
            "ok" if c.ok else ("MISSING" if c.required else "absent"),
            c.subject,
            c.detail,
            "" if c.ok else c.fix,
        )
        for c in checks
    ]
    print_rows(app, ("status", "check", "detail", "fix"), rows)
    if missing:
        app.err.print(
            f"{len(missing)} required check(s) failed: " + ", ".join(c.subject for c in missing)
        )
        return failed
    return 0
