"""Run jobs on a pool of engines: bounded slots, native first, retries, cancellation.

A ready set ordered longest-expected-first (LPT, which keeps the makespan
close to the lower bound), one thread per slot, and a loop that places
whatever is ready on whatever is free. Placement: a native engine when one
has a free slot; an emulating engine only when no native engine exists, or
when all native ones are busy and `emulate_when_busy` is set. Transient
failures are retried with backoff; fail-fast stops scheduling (running jobs
finish); cancel() stops scheduling and kills what runs. Every job ends with
an outcome, including the ones never started.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from orchestrator.config import Arch
from orchestrator.engines import Engine
from orchestrator.engines.pool import EnginePool
from orchestrator.errors import EngineError

T = TypeVar("T")


@dataclass(frozen=True)
class Job(Generic[T]):
    id: str
    arch: Arch
    expected: float  # seconds, from earlier runs; orders the ready set
    payload: T
    depends: tuple[str, ...] = ()


@dataclass(frozen=True)
class Placement:
    engine: Engine
    emulated: bool
    reason: str


@dataclass
class Outcome:
    """What a job function returns; the scheduler fills `attempts` and placement."""

    ok: bool
    transient: bool = False  # worth retrying (lost connection, download failed)
    detail: str = ""
    data: object = None
    attempts: int = 0
    placement: Placement | None = None
    cancelled: bool = False


class Cancel:
    """Set on SIGINT/SIGTERM; jobs register how to stop what they started."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._hooks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def on_cancel(self, hook: Callable[[], None]) -> None:
        with self._lock:
            self._hooks.append(hook)
        if self.event.is_set():
            hook()

    def cancel(self) -> None:
        self.event.set()
        with self._lock:
            hooks = list(self._hooks)
        for hook in hooks:
            hook()


JobFn = Callable[[Job[T], Placement, Cancel], Outcome]


@dataclass
class Scheduler:
    pool: EnginePool
    emulate_when_busy: bool = False
    fail_fast: bool = False
    retries: int = 2
    backoff: float = 2.0
    cancel: Cancel = field(default_factory=Cancel)
    on_event: Callable[[str, Job[Any], Outcome | Placement | None], None] = lambda *_: None

    def run(self, jobs: Sequence[Job[T]], fn: JobFn[T]) -> dict[str, Outcome]:
        pending = {j.id: j for j in jobs}
        for job in jobs:
            self.on_event("queued", job, None)
        attempts = dict.fromkeys(pending, 0)
        not_before: dict[str, float] = {}
        free = {e.name: e.slots for e in self.pool.engines}
        results: dict[str, Outcome] = {}
        running: dict[Future[Outcome], tuple[Job[T], Placement]] = {}
        stop = False
        with ThreadPoolExecutor(max_workers=max(1, sum(free.values()))) as threads:
            while pending or running:
                stop = stop or self.cancel.event.is_set()
                if not stop:
                    self._start_ready(
                        pending, results, free, not_before, attempts, running, threads, fn
                    )
                if not running:
                    if stop or not pending:
                        break
                    if not self._waiting_for_backoff(pending, not_before):
                        self._unplaceable(pending, results)
                        break
                    time.sleep(0.05)
                    continue
                done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    job, placement = running.pop(future)
                    free[placement.engine.name] += 1
                    outcome = _result(future)
                    outcome.attempts, outcome.placement = attempts[job.id], placement
                    if (
                        not outcome.ok
                        and outcome.transient
                        and not self.cancel.event.is_set()
                        and attempts[job.id] <= self.retries
                    ):
                        pending[job.id] = job
                        not_before[job.id] = time.monotonic() + self.backoff * attempts[job.id]
                        self.on_event("retry", job, outcome)
                        continue
                    results[job.id] = outcome
                    self.on_event("done", job, outcome)
                    stop = stop or (self.fail_fast and not outcome.ok)
        for job in pending.values():
            results[job.id] = Outcome(ok=False, cancelled=True, detail="not started")
            self.on_event("cancelled", job, results[job.id])
        return results

    def _start_ready(
        self,
        pending: dict[str, Job[T]],
        results: dict[str, Outcome],
        free: dict[str, int],
        not_before: dict[str, float],
        attempts: dict[str, int],
        running: dict[Future[Outcome], tuple[Job[T], Placement]],
        threads: ThreadPoolExecutor,
        fn: JobFn[T],
    ) -> None:
        now = time.monotonic()
        ready = [
            j
            for j in pending.values()
            if all(d in results for d in j.depends) and not_before.get(j.id, 0) <= now
        ]
        for job in sorted(ready, key=lambda j: (-j.expected, j.id)):
            placement = self.place(job.arch, free)
            if placement is None:
                continue
            free[placement.engine.name] -= 1
            attempts[job.id] += 1
            del pending[job.id]
            self.on_event("start", job, placement)
            running[threads.submit(fn, job, placement, self.cancel)] = (job, placement)

    def place(self, arch: Arch, free: dict[str, int]) -> Placement | None:
        native, emulating = self.pool.candidates(arch)
        open_native = [e for e in native if free[e.name] > 0]
        if open_native:
            engine = max(open_native, key=lambda e: free[e.name])
            return Placement(engine, False, f"native {arch.value} engine with a free slot")
        if native and not self.emulate_when_busy:
            return None
        open_emulating = [e for e in emulating if free[e.name] > 0]
        if not open_emulating:
            return None
        why = (
            "native engines busy and --emulate-when-busy"
            if native
            else f"no native {arch.value} engine"
        )
        return Placement(max(open_emulating, key=lambda e: free[e.name]), True, why)

    def _waiting_for_backoff(
        self, pending: dict[str, Job[T]], not_before: dict[str, float]
    ) -> bool:
        return any(not_before.get(j, 0) > time.monotonic() for j in pending)

    def _unplaceable(self, pending: dict[str, Job[T]], results: dict[str, Outcome]) -> None:
        for job in list(pending.values()):
            results[job.id] = Outcome(
                ok=False,
                detail=f"no engine runs {job.arch.value}, natively or emulated "
                "(run `orchestrate doctor`; install QEMU with scripts/setup-host)",
            )
            self.on_event("done", job, results[job.id])
            del pending[job.id]


def _result(future: Future[Outcome]) -> Outcome:
    try:
        return future.result()
    except EngineError as exc:
        return Outcome(ok=False, transient=True, detail=exc.message)
    except Exception as exc:  # a bug in one job must not sink the run
        return Outcome(ok=False, detail=f"internal error: {type(exc).__name__}: {exc}")
