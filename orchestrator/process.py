"""Host commands as values: a `Command` goes in, a `Completed` comes out.

Used for the few things that run on the host rather than in an engine
(debootstrap, tar). Output goes to a log file; the result keeps its tail
so that an error can quote it.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    cwd: Path | None = None
    env: Mapping[str, str] | None = None
    timeout: float | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def display(self) -> str:
        """The command as a shell line, with secrets replaced."""
        text = shlex.join(self.argv)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


@dataclass(frozen=True)
class Completed:
    command: Command
    returncode: int
    duration: float
    tail: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run(command: Command, log: Path) -> Completed:
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("a") as out:
        out.write(f"$ {command.display()}\n")
        out.flush()
        try:
            proc = subprocess.run(
                command.argv,
                cwd=command.cwd,
                env=command.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=command.timeout,
                check=False,
            )
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = -9
            out.write(f"\n[timed out after {command.timeout}s]\n")
        except FileNotFoundError:
            code = 127
            out.write(f"\n[{command.argv[0]}: command not found]\n")
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    return Completed(command, code, time.monotonic() - started, tail)
