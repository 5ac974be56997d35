"""`orchestrate` and `python -m orchestrator`: signals answered from the first moment.

The command line imports a few hundred modules before it can install its own
handlers; a SIGINT or SIGTERM that arrived during those imports printed a
traceback and killed the process by the signal (exit -2 or -15) instead of
exit 130. So the handlers come first, with nothing but the standard library
imported, and an interruption during start-up ends the command as any other.
"""

from __future__ import annotations

import os
import signal
import sys

EXIT_INTERRUPTED = 130  # core.errors' value: that module is not imported yet
_received: list[int] = []  # the signals that came during start-up


def _interrupt(signum: int, _frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def main() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    sys.unraisablehook = _unraisable
    try:
        from orchestrator.cli import main as cli_main
    except KeyboardInterrupt:
        _interrupted()
    # The interrupt can be raised where Python only reports it and goes on, e.g. in
    # the import system's weakref callback that drops a module lock ("Exception
    # ignored in: <function _get_module_lock.<locals>.cb>"): the imports then go on
    # and the command would run. It ends all the same.
    if _received:
        _interrupted()
    sys.unraisablehook = sys.__unraisablehook__
    cli_main()


def _unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """Our own interrupt, swallowed where exceptions cannot propagate: no traceback."""
    if not (_received and isinstance(unraisable.exc_value, KeyboardInterrupt)):
        sys.__unraisablehook__(unraisable)


def _interrupted() -> None:
    sys.stderr.write("interrupted\n")
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)  # a half-imported package is not worth unwinding


if __name__ == "__main__":
    main()
