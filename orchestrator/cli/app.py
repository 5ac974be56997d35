"""The app object every command receives: global flags and lazy loading."""

from __future__ import annotations

import contextlib
import json
import math
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrator.config import Matrix, load_matrix
from orchestrator.config.matrix import Platform, expand, select
from orchestrator.core.errors import Interrupted
from orchestrator.core.layout import RunLayout
from orchestrator.core.quoting import printable
from orchestrator.engines.pool import EnginePool
from orchestrator.images.facts import ProbeCache
from orchestrator.plan.gather import BuilderRuntime
from orchestrator.scheduler import Cancel

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_MATRIX = Path("platforms.yaml")


class Seconds(click.FloatRange):
    """A number of seconds: finite, at least `min` (click's FloatRange lets NaN and
    infinity through, since every comparison with NaN is false)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return number


class SteadyConsole(Console):
    """A console whose reader going away (a closed ssh session, `| head`) does not end
    the run: rich's default exits; here output just stops, and logs and reports go on."""

    def on_broken_pipe(self) -> None:
        self.quiet = True


@dataclass
class App:
    """The CLI's state for one command. Mutable: click fills it from the group's
    options before the command runs, and its cached properties load the matrix and
    the engines once."""

    debug: bool = False
    verbosity: int = 0  # -1 with -q, 1 with -v
    matrix_path: Path = DEFAULT_MATRIX
    patterns: tuple[str, ...] = ()
    workdir: Path = Path(".orchestrate")
    console: Console = field(default_factory=lambda: SteadyConsole(highlight=False))
    err: Console = field(default_factory=lambda: SteadyConsole(stderr=True, highlight=False))

    @cached_property
    def matrix(self) -> Matrix:
        loaded = load_matrix(self.matrix_path)
        for warning in loaded.warnings:
            self.err.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
        return loaded

    @cached_property
    def platforms(self) -> tuple[Platform, ...]:
        return select(expand(self.matrix), self.patterns)

    @cached_property
    def layout(self) -> RunLayout:
        """Every path of this run: logs, jobs and reports under --workdir, caches shared."""
        return RunLayout(self.workdir)

    @cached_property
    def pool(self) -> EnginePool:
        # Imported here so that commands which need no engine never load docker-py.
        from orchestrator.engines.docker import DockerEngine

        return EnginePool.of(self.matrix.engines, DockerEngine, self.layout.engines)

    def builders(self) -> dict[str, BuilderRuntime]:
        """The builders' last probed runtime facts, for the plan's ABI check."""
        probes = ProbeCache(self.layout.probes)
        found = {p.name: probes.runtime(p.name) for p in self.platforms}
        return {
            p: BuilderRuntime(r[0], frozenset([r[1]])) for p, r in found.items() if r is not None
        }

    def probed(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """The builders' last probed tags, for commands that build no image."""
        probes = ProbeCache(self.layout.probes)
        return {p.name: probes.read(p.name) for p in self.platforms}


pass_app = click.make_pass_decorator(App)
KEY_COLUMNS = 2
MAX_PAD = 48  # characters a plain column pads to


def print_rows(app: App, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on a terminal; aligned plain columns in CI logs and pipes."""
    rows = [[printable(c) for c in row] for row in rows]  # cells may be a bundle's text
    if app.console.is_terminal:
        # The first columns name things (platform, requirement): never cut; the
        # rest wrap within the terminal's width.
        table = Table()
        for i, header in enumerate(headers):
            table.add_column(header, no_wrap=i < KEY_COLUMNS, overflow="fold")
        for row in rows:
            table.add_row(*(Text(c) for c in row))  # text, not rich markup
        app.console.print(table)
        return
    # A column is as wide as its widest cell up to MAX_PAD; a longer cell (a URL
    # requirement) runs past its column instead of widening every row's.
    widths = [
        min(MAX_PAD, max(len(str(r[i])) for r in [headers, *rows])) for i in range(len(headers))
    ]
    for row in [headers, *rows]:
        line = "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
        click.echo(line.rstrip())


def format_option(func: F) -> F:
    """--format table|json: JSON on stdout is for scripts; progress then goes to stderr."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="A table for people, or JSON on stdout for scripts.",
    )(func)


def echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=1, default=str))


def workdir_option(func: F) -> F:
    """--workdir: where logs and reports go."""

    def set_workdir(ctx: click.Context, _p: click.Parameter, value: Path | None) -> None:
        if value is not None:
            ctx.ensure_object(App).workdir = value

    return click.option(
        "--workdir",
        type=click.Path(path_type=Path, file_okay=False),
        expose_value=False,
        callback=set_workdir,
        envvar="ORCHESTRATE_WORKDIR",
        show_envvar=True,
        help="Logs and reports go here [default: .orchestrate].",
    )(func)


@contextlib.contextmanager
def signals_cancel() -> Iterator[Cancel]:
    """SIGINT/SIGTERM cancel the running jobs instead of killing the process mid-write."""
    cancel = Cancel()
    previous = {}

    def handler(signum: int, _frame: object) -> None:
        cancel.cancel()  # first: a closed terminal or pipe must not stop the clean-up
        with contextlib.suppress(OSError, ValueError):
            click.echo(
                f"\n{signal.Signals(signum).name}: stopping, cleaning up containers...",
                err=True,
            )

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield cancel
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def raise_if_cancelled(cancel: Cancel) -> None:
    """After the report is written: exit 130 if a signal stopped the run."""
    if cancel.event.is_set():
        raise Interrupted(
            "interrupted: running jobs were stopped and removed; the report lists what finished"
        )


def matrix_options(func: F) -> F:
    """--matrix and --platform, shared by every command that reads the matrix."""

    def set_patterns(ctx: click.Context, _p: click.Parameter, value: Sequence[str]) -> None:
        if value:
            ctx.ensure_object(App).patterns = tuple(value)

    func = click.option(
        "--platform",
        "-p",
        "platform",
        multiple=True,
        expose_value=False,
        callback=set_patterns,
        envvar="ORCHESTRATE_PLATFORM",
        show_envvar=True,
        metavar="GLOB",
        help="Only platforms matching this glob (repeatable), e.g. 'debian-*-arm64'.",
    )(func)
    return matrix_option(func)


def matrix_option(func: F) -> F:
    """--matrix alone (for `reproduce`, whose platform is an argument)."""

    def set_matrix(ctx: click.Context, _p: click.Parameter, value: Path | None) -> None:
        if value is not None:
            ctx.ensure_object(App).matrix_path = value

    return click.option(
        "--matrix",
        "-m",
        type=click.Path(path_type=Path),
        expose_value=False,
        callback=set_matrix,
        envvar="ORCHESTRATE_MATRIX",
        show_envvar=True,
        help="The matrix file [default: platforms.yaml in the working folder].",
    )(func)
