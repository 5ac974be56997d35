"""`orchestrate reproduce` and `orchestrate report`."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from orchestrator.cli.app import DEFAULT_MATRIX, App, matrix_option, pass_app, workdir_option
from orchestrator.config import EngineSpec, load_matrix
from orchestrator.config.matrix import expand
from orchestrator.core.errors import InputError, RegistryError
from orchestrator.core.quoting import printable, shown
from orchestrator.engines import Engine, RunRequest
from orchestrator.jobs.sources import SdistCache
from orchestrator.report.data import load_report
from orchestrator.report.html import write_html
from orchestrator.reproduce import (
    JobSpec,
    ensure_image,
    find_job,
    print_script,
    run_phases,
    run_smoke,
)

REPORT = click.Path(path_type=Path, dir_okay=False)


@click.command()
@workdir_option
@matrix_option
@click.argument("platform")
@click.argument("requirement", metavar="NAME[==VERSION]")
@click.option(
    "--report",
    "report_path",
    type=REPORT,
    help="The report to take the job from [default: the last build's].",
)
@click.option(
    "--engine",
    "engine_url",
    default=None,
    help="Engine URL [default: $DOCKER_HOST or the local socket].",
)
@click.option("--shell", is_flag=True, help="Open a shell in the offline build container.")
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="Print the job's two phases as a shell script that runs anywhere, and exit.",
)
@pass_app
def reproduce(
    app: App,
    platform: str,
    requirement: str,
    report_path: Path | None,
    *,
    engine_url: str | None,
    shell: bool,
    print_only: bool,
) -> int:
    """Re-run a job of a report: same builder image, commands, environment and arch.

    Exits with the reproduced job's own exit status (0 when it now succeeds).
    """
    path = report_path or app.layout.reports / "latest.json"
    report = load_report(path)
    spec = find_job(report, platform, requirement, origin=str(path))
    if print_only:
        click.echo(print_script(spec), nl=False)
        return 0
    from orchestrator.engines.docker import DockerEngine

    url = engine_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    engine = DockerEngine(EngineSpec(name="local", url=url))
    native = engine.info().arch == spec.arch
    click.echo(
        f"reproducing {spec.job} (was {spec.status}, exit {spec.exit_code}) on {url}: "
        + (
            "native"
            if native
            else f"EMULATED {spec.arch.value} (this engine is "
            f"{engine.info().machine}); expect it to be slower"
        ),
        err=True,
    )
    image = ensure_image(engine, spec, lambda line: click.echo(line, err=True))
    if shell:
        return _shell(engine, spec, image, sdists=SdistCache(app.layout.sdists))
    code, job_tar = run_phases(engine, spec, image, _stdout, sdists=SdistCache(app.layout.sdists))
    if code == 0 and spec.smoke_packages:
        code = _smoke_again(app, engine, spec, job_tar, report=report)
    click.echo(f"\n== exit status {code} (the job had {spec.exit_code})", err=True)
    return code


def _smoke_again(
    app: App, engine: Engine, spec: JobSpec, job_tar: bytes, *, report: Mapping[str, Any]
) -> int:
    """The job's smoke test too. Its base image comes from the matrix: the one
    given, else the one the report's run used."""
    path = app.matrix_path
    if path == DEFAULT_MATRIX and report.get("matrix"):
        path = Path(str(report["matrix"]))
    try:
        where = next((p for p in expand(load_matrix(path)) if p.name == spec.platform), None)
        if where is None:
            raise InputError(f"{spec.platform} is not in {path}")
        return run_smoke(engine, spec, where, job_tar, layout=app.layout, on_line=_echo)
    except (InputError, RegistryError) as exc:
        click.echo(f"== smoke test not repeated: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"  hint: {exc.hint}", err=True)
        return 0


def _echo(line: str) -> None:
    click.echo(line)


def _stdout(chunk: bytes) -> None:
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


def _shell(engine: Engine, spec: JobSpec, image: str, *, sdists: SdistCache) -> int:
    """Fetch with network, then an interactive shell offline, as phase 2 runs: the
    build phase's container, with a shell instead of its command."""
    fetch = replace(spec, phases=(spec.phases[0],))
    code, job_tar = run_phases(engine, fetch, image, _stdout, sdists=sdists)
    if code != 0:
        return code
    build = spec.phases[-1]
    hint = shlex.quote("  " + shlex.join(build["command"]))
    script = (
        "cd /job && echo && echo 'sdist unpacked in /job/build, build environment in "
        f"/job/env; the build phase runs:' && echo {hint} && exec bash"
    )
    request = RunRequest(
        image=image,
        command=("bash", "-c", script),
        platform=spec.arch,
        env=dict(build["env"]),
        network=False,
        workdir="/job",
        labels={"org.orchestrate.reproduce": spec.job},
        interactive=True,
    )
    with engine.container(request) as box:
        box.put("/", job_tar)
        return box.attach_terminal()


@click.command()
@click.argument("report_file", type=REPORT)
@click.option("--html", "html_path", type=REPORT, required=True, help="Write the page here.")
def report(report_file: Path, html_path: Path) -> None:
    """Render a JSON build report again as an HTML page."""
    data = load_report(report_file)
    for number, job in enumerate(data["jobs"]):
        log = job.get("log") if isinstance(job, dict) else None
        if isinstance(log, str) and printable(log) != log:  # a path no file system has
            raise InputError(
                f"{report_file}: jobs/{number} has a log path with a control character "
                f"({shown(log)})",
                hint="pass a report written by `orchestrate build`",
            )
    write_html(data, html_path)
    click.echo(f"wrote {html_path}")
