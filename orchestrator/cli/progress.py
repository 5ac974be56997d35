"""Progress of scheduled jobs: a live table on a terminal, plain lines in CI."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from orchestrator.core.quoting import printable
from orchestrator.jobs.graph import WheelJob
from orchestrator.scheduler import Job, JobResult, Placement


class LiveProgress:
    """The scheduler's `Progress` on a console: what runs where and what finished, as
    a live table on a terminal and plain lines elsewhere."""

    def __init__(
        self,
        console: Console,
        total: int,
        what: str,
        log_of: Callable[[str], object] | None = None,
        *,
        quiet: bool = False,
    ) -> None:
        self.console = console
        self.log_of = log_of  # with -v: where each job's log streams
        self.what = what
        # Images and jobs are counted apart: "[1/46]" is the first of 46 jobs, not the
        # third of 48 things once two images were made.
        self.total: dict[str, int] = {what: total}
        self.done: dict[str, int] = {}
        self.failed = 0
        self._running: dict[str, tuple[str, bool, float, str]] = {}  # engine, mode, start, phase
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._closed = quiet  # -q: no progress lines at all

    def __enter__(self) -> LiveProgress:
        if self.console.is_terminal:
            self._live = Live(
                self._table(), console=self.console, refresh_per_second=2, transient=True
            )
            self._live.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.__exit__(kind, exc, tb)

    def queued(self, job: Job[Any]) -> None:
        with self._lock:
            group = _group(job)
            self.total[group] = self.total.get(group, 0) + 1
            self._refresh()

    def started(self, job: Job[Any], placement: Placement) -> None:
        with self._lock:
            engine = placement.engine.name
            self._running[job.id] = (engine, placement.emulated, time.monotonic(), "")
            how = f"emulated: {placement.reason}" if placement.emulated else "native"
            self._line(f"start  {job.id} on {engine} ({how})")
            if self.log_of is not None:
                self._line(f"       log: {self.log_of(job.id)}")
            self._refresh()

    def phase(self, job_id: str, name: str) -> None:
        with self._lock:
            if job_id in self._running:
                engine, emulated, started, _ = self._running[job_id]
                self._running[job_id] = (engine, emulated, started, name)
            self._refresh()

    def retrying(self, job: Job[Any], result: JobResult) -> None:
        with self._lock:
            self._running.pop(job.id, None)
            self._line(f"retry  {job.id}: {result.detail}")

    def finished(self, job: Job[Any], result: JobResult) -> None:
        with self._lock:
            self._running.pop(job.id, None)
            group = _group(job)
            self.done[group] = done = self.done.get(group, 0) + 1
            self.failed += 0 if result.ok else 1
            state = "ok" if result.ok else ("cancelled" if result.cancelled else "FAILED")
            count = f"{done}/{self.total.get(group, 0)}"
            self._line(f"{state:<6} {job.id} [{group[:-1]} {count}] {result.detail}")
            self._refresh()

    def not_started(self, job: Job[Any], result: JobResult) -> None:
        self.finished(job, result)

    def notice(self, text: str) -> None:
        with self._lock:
            self._line(f"notice: {text}")
            self._refresh()

    def _refresh(self) -> None:
        if self._live is not None and not self._closed:
            with contextlib.suppress(OSError, ValueError):
                self._live.update(self._table())

    def _line(self, text: str) -> None:
        if self._closed:
            return
        try:
            self.console.print(printable(text), markup=False, highlight=False, soft_wrap=True)
        except (OSError, ValueError):
            # The terminal or pipe went away (a closed ssh session, a killed parent):
            # the run goes on, its log files and report are what count.
            self._closed = True

    def _table(self) -> Table:
        table = Table(
            title=f"{self.what}: {self.done.get(self.what, 0)}/{self.total.get(self.what, 0)} "
            "done, "
            f"{self.failed} failed, {len(self._running)} running"
        )
        for name in ("job", "engine", "mode", "phase", "elapsed"):
            table.add_column(name)
        now = time.monotonic()
        for job_id, (engine, emulated, started, phase) in sorted(self._running.items()):
            mode = "emulated" if emulated else "native"
            table.add_row(job_id, engine, mode, phase, f"{now - started:.0f}s")
        return table


def _group(job: Job[object]) -> str:
    """What a scheduled job is: a wheel job or a builder image (counted apart)."""
    return "jobs" if isinstance(job.payload, WheelJob) else "images"
