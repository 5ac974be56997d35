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


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        from orchestrator.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)  # a half-imported package is not worth unwinding
    cli_main()


if __name__ == "__main__":
    main()
