"""Host commands as values: a `Command` goes in, a `Completed` comes out.

Used for the few things that run on the host rather than in an engine
(debootstrap, tar). Output goes to a log file; the result keeps its tail
so that an error can quote it.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core.redact import MASK, RedactingLog, redact


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    cwd: Path | None = None
    env: Mapping[str, str] | None = None
    timeout: float | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def display(self) -> str:
        """The command as a shell line, with secrets and URL credentials masked."""
        return self.clean(shlex.join(self.argv))

    def clean(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, MASK)
        return redact(text)


def url_secrets(*urls: str) -> tuple[str, ...]:
    """The passwords (or lone tokens) in `urls`, for `Command.secrets`."""
    found = []
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        found += [s for s in (parts.password, parts.username if not parts.password else None) if s]
    return tuple(found)


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
    """Run on the host; its output goes to `log` line by line, with secrets masked."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("ab") as raw:
        out = RedactingLog(raw, command.secrets)
        out.write(f"$ {command.display()}\n".encode())
        code = _run(command, out)
        out.close()
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    return Completed(command, code, time.monotonic() - started, tail)


def _run(command: Command, out: RedactingLog) -> int:
    try:
        proc = subprocess.Popen(
            command.argv,
            cwd=command.cwd,
            env=command.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except FileNotFoundError:
        out.write(f"\n[{command.argv[0]}: command not found]\n".encode())
        return 127
    killer = threading.Timer(command.timeout, proc.kill) if command.timeout else None
    if killer is not None:
        killer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
        code = proc.wait()
    finally:
        if killer is not None:
            killer.cancel()
    if code == -signal.SIGKILL and command.timeout:
        out.write(f"\n[timed out after {command.timeout}s]\n".encode())
    return code
