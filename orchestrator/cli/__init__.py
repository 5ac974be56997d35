"""The `orchestrate` command line: the only place that exits.

Every `OrchestrateError` is caught once here and turned into its message and
exit code; tracebacks appear only with --debug.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback

import click

from orchestrator import version_line
from orchestrator.cli.app import App
from orchestrator.cli.build import build
from orchestrator.cli.doctor import ci_step, doctor, setup_host
from orchestrator.cli.images import images
from orchestrator.cli.index import prune, publish, rollback, serve
from orchestrator.cli.matrix import matrix
from orchestrator.cli.merge import merge
from orchestrator.cli.plan import plan
from orchestrator.cli.reproduce import report, reproduce
from orchestrator.core.errors import EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, OrchestrateError
from orchestrator.core.quoting import printable
from orchestrator.core.redact import RedactingStream


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors (anywhere on the line).")
@click.option(
    "-q", "--quiet", is_flag=True, help="No progress lines, only results (anywhere on the line)."
)
@click.option(
    "-v", "--verbose", is_flag=True, help="Also each job's log file (anywhere on the line)."
)
@click.option(
    "--version",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=lambda ctx, _param, value: _print_version(ctx) if value else None,
    help="Show the version and the commit this orchestrate was built from, and exit.",
)
@click.pass_context
def cli(ctx: click.Context, *, debug: bool, quiet: bool, verbose: bool) -> None:
    """Build multi-arch builder images and per-platform Python wheel caches.

    Shell completion: eval "$(_ORCHESTRATE_COMPLETE=bash_source orchestrate)"
    (zsh_source, fish_source for those shells).
    """
    ctx.ensure_object(App).debug = ctx.ensure_object(App).debug or debug


def _print_version(ctx: click.Context) -> None:
    """Asked for only when --version is given: git is not run at every start."""
    click.echo(version_line())
    ctx.exit()


cli.add_command(matrix)
cli.add_command(doctor)
cli.add_command(setup_host)
cli.add_command(ci_step)
cli.add_command(plan)
cli.add_command(images)
cli.add_command(build)
cli.add_command(merge)
for command in (publish, prune, rollback, serve, reproduce, report):
    cli.add_command(command)


def _name_envvars(command: click.Command, path: tuple[str, ...] = ()) -> None:
    """Every option also reads ORCHESTRATE_<COMMAND>_<OPTION> (its long name, e.g.
    ORCHESTRATE_BUILD_DEADLINE); the shared ones set their own (ORCHESTRATE_MATRIX).
    The command line wins over the environment, which wins over the default."""
    for param in command.params:
        long = [o for o in param.opts if o.startswith("--")]
        if isinstance(param, click.Option) and param.envvar is None and long and path:
            words = [*path, long[0][2:]]
            param.envvar = "ORCHESTRATE_" + "_".join(words).upper().replace("-", "_")
            param.show_envvar = True
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            _name_envvars(sub, (*path, name))


_name_envvars(cli)


def main(argv: list[str] | None = None) -> None:
    """Everything printed goes through the redactor: no credential reaches the terminal."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(out), RedactingStream(err)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        _main(argv)
    except SystemExit as exc:
        if exc.code == EXIT_INTERRUPTED and _stuck_workers():
            # A worker blocked in a read would hold the interpreter's exit (it joins
            # every worker thread): what had to be written was written on the way here.
            out.flush()
            err.flush()
            os._exit(EXIT_INTERRUPTED)
        raise
    finally:
        sys.stdout, sys.stderr = out, err
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _stuck_workers() -> bool:
    return any(
        t is not threading.current_thread() and t.is_alive() and not t.daemon
        for t in threading.enumerate()
    )


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a command like SIGINT: exit 130, no traceback


GLOBAL_FLAGS = {
    "--debug": "debug",
    "-q": "quiet",
    "--quiet": "quiet",
    "-v": "verbose",
    "--verbose": "verbose",
}


def _global_flags(args: list[str]) -> tuple[list[str], set[str]]:
    """--debug, -q and -v work before or after the command: taken out here, once."""
    if "--" in args:
        cut = args.index("--")
        rest, found = _global_flags(args[:cut])
        return [*rest, *args[cut:]], found
    found = {GLOBAL_FLAGS[a] for a in args if a in GLOBAL_FLAGS}
    return [a for a in args if a not in GLOBAL_FLAGS], found


def _main(argv: list[str] | None) -> None:
    args, flags = _global_flags(list(sys.argv[1:] if argv is None else argv))
    debug = "debug" in flags
    app = App(debug=debug, verbosity=("verbose" in flags) - ("quiet" in flags))
    try:
        code = cli.main(
            args=args,
            prog_name="orchestrate",
            standalone_mode=False,
            obj=app,
        )
    except OrchestrateError as exc:
        if debug:  # the traceback too, but the same exit code: scripts branch on it
            traceback.print_exc()
        click.echo(exc.render(printable), err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:  # one style for every error: ours, not click's
        context = getattr(exc, "ctx", None)
        if context is not None:
            click.echo(context.get_usage(), err=True)
        text = f"error: {exc.format_message()}"
        if context is not None:
            text += f"\n  hint: see `{context.command_path} --help`"
        click.echo(text, err=True)
        sys.exit(exc.exit_code if exc.exit_code else EXIT_INPUT)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        if debug:
            raise
        click.echo(
            f"internal error: {type(exc).__name__}: {printable(exc)}\n"
            "  run again with --debug for the traceback, and please report it",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)
    sys.exit(code if isinstance(code, int) else 0)
