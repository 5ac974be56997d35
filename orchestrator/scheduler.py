"""Run jobs on a pool of engines: bounded slots, native first, retries, cancellation.

A job graph (the standard library's graphlib: a job is ready once every job
it depends on has ended), a ready set ordered longest-expected-first (LPT,
which keeps the makespan close to the lower bound), one thread per slot,
and a loop that places whatever is ready on whatever is free. Placement: a native engine when one
has a free slot; an emulating engine only when no native engine exists, or
when all native ones are busy and `emulate_when_busy` is set. Transient
failures are retried with backoff; fail-fast stops scheduling (running jobs
finish); so does the run deadline; cancel() stops scheduling and kills what
runs. Every job ends with an outcome, including the ones never started.
"""

from __future__ import annotations

import graphlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

from orchestrator.core.errors import EngineError, OrchestrateError
from orchestrator.engines import Engine
from orchestrator.engines.pool import EnginePool
from orchestrator.model import Arch

T = TypeVar("T")


@dataclass(frozen=True)
class Job(Generic[T]):
    id: str
    arch: Arch
    expected: float  # seconds, from earlier runs; orders the ready set
    payload: T
    depends: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Placement:
    engine: Engine
    emulated: bool
    reason: str


@dataclass(frozen=True, kw_only=True)
class JobResult:
    """What a job function returns; the scheduler's copy adds `attempts` and placement."""

    ok: bool
    transient: bool = False  # worth retrying (lost connection, download failed)
    detail: str = ""
    data: object = None
    attempts: int = 0
    placement: Placement | None = None
    cancelled: bool = False
    unplaceable: bool = False  # no engine of the pool runs its arch at all


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


JobFn = Callable[[Job[T], Placement, Cancel], JobResult]


class Progress(Protocol):
    """What a run tells whoever watches it, one method per event: the CLI shows
    them (`cli/progress.py`), tests record them."""

    def queued(self, job: Job[Any]) -> None: ...

    def started(self, job: Job[Any], placement: Placement) -> None: ...

    def phase(self, job_id: str, name: str) -> None: ...

    def retrying(self, job: Job[Any], result: JobResult) -> None: ...

    def finished(self, job: Job[Any], result: JobResult) -> None: ...

    def not_started(self, job: Job[Any], result: JobResult) -> None: ...

    def notice(self, text: str) -> None: ...


class Silent:
    """Progress that nobody watches."""

    def queued(self, job: Job[Any]) -> None:
        pass

    def started(self, job: Job[Any], placement: Placement) -> None:
        pass

    def phase(self, job_id: str, name: str) -> None:
        pass

    def retrying(self, job: Job[Any], result: JobResult) -> None:
        pass

    def finished(self, job: Job[Any], result: JobResult) -> None:
        pass

    def not_started(self, job: Job[Any], result: JobResult) -> None:
        pass

    def notice(self, text: str) -> None:
        pass


@dataclass(frozen=True)
class Scheduler:
    pool: EnginePool
    emulate_when_busy: bool = False
    fail_fast: bool = False
    retries: int = 2
    backoff: float = 2.0
    cancel: Cancel = field(default_factory=Cancel)
    deadline: float | None = None  # time.monotonic() after which no job starts
    longest_first: bool = True  # False: first come, first served (benchmarks compare)
    progress: Progress = field(default_factory=Silent)

    def run(self, jobs: Sequence[Job[T]], fn: JobFn[T]) -> dict[str, JobResult]:
        state = _State(jobs)
        for job in jobs:
            self.progress.queued(job)
        free = {e.name: e.slots for e in self.pool.engines}
        running: dict[Future[JobResult], tuple[Job[T], Placement]] = {}
        stop = False
        with ThreadPoolExecutor(max_workers=max(1, sum(free.values()))) as threads:
            while state.pending or running:
                stop = stop or self.cancel.event.is_set() or self._past_deadline()
                if not stop:
                    self._start_ready(state, free, running, threads, fn=fn)
                if not running:
                    if stop or not state.pending:
                        break
                    if not state.waiting_for_backoff():
                        self._unplaceable(state)
                        continue  # their dependants may still be placeable
                    time.sleep(0.05)
                    continue
                done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    job, placement = running.pop(future)
                    free[placement.engine.name] += 1
                    attempts = state.attempts[job.id]
                    outcome = replace(_result(future), attempts=attempts, placement=placement)
                    if self._retry(state, job, outcome):
                        continue
                    state.finish(job, outcome)
                    self.progress.finished(job, outcome)
                    stop = stop or (self.fail_fast and not outcome.ok)
        why = "not started: the run deadline passed" if self._past_deadline() else "not started"
        for job in list(state.pending.values()):
            state.results[job.id] = JobResult(ok=False, cancelled=True, detail=why)
            self.progress.not_started(job, state.results[job.id])
        return state.results

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _retry(self, state: _State[T], job: Job[T], outcome: JobResult) -> bool:
        """Put a transient failure back in the queue, after a backoff; False if not."""
        if (
            outcome.ok
            or not outcome.transient
            or self.cancel.event.is_set()
            or state.attempts[job.id] > self.retries
        ):
            return False
        state.pending[job.id] = job
        state.ready.add(job.id)
        state.not_before[job.id] = time.monotonic() + self.backoff * state.attempts[job.id]
        self.progress.retrying(job, outcome)
        return True

    def _start_ready(
        self,
        state: _State[T],
        free: dict[str, int],
        running: dict[Future[JobResult], tuple[Job[T], Placement]],
        threads: ThreadPoolExecutor,
        *,
        fn: JobFn[T],
    ) -> None:
        now = time.monotonic()
        ready = [state.pending[j] for j in state.ready if state.not_before.get(j, 0) <= now]
        if self.longest_first:
            ready.sort(key=lambda j: (-j.expected, j.id))
        else:
            ready.sort(key=lambda j: state.arrival[j.id])
        for job in ready:
            placement = self.place(job.arch, free)
            if placement is None:
                continue
            free[placement.engine.name] -= 1
            state.start(job)
            self.progress.started(job, placement)
            running[threads.submit(fn, job, placement, self.cancel)] = (job, placement)

    def place(self, arch: Arch, free: dict[str, int]) -> Placement | None:
        native, emulating = self.pool.candidates(arch)
        open_native = [e for e in native if free[e.name] > 0]
        if open_native:
            engine = max(open_native, key=lambda e: free[e.name])
            return Placement(
                engine=engine, emulated=False, reason=f"native {arch.value} engine with a free slot"
            )
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
        return Placement(
            engine=max(open_emulating, key=lambda e: free[e.name]), emulated=True, reason=why
        )

    def _unplaceable(self, state: _State[T]) -> None:
        for job_id in list(state.ready):
            job = state.pending[job_id]
            outcome = JobResult(
                ok=False,
                unplaceable=True,
                detail=f"no engine runs {job.arch.value}, natively or emulated "
                "(run `orchestrate doctor`; install QEMU with `sudo orchestrate setup-host`)",
            )
            state.finish(job, outcome)
            self.progress.finished(job, outcome)


class _State(Generic[T]):
    """The graph's bookkeeping: what waits, what is ready, what is done (graphlib)."""

    def __init__(self, jobs: Sequence[Job[T]]) -> None:
        self.pending = {j.id: j for j in jobs}
        self.arrival = {j.id: i for i, j in enumerate(jobs)}
        known = set(self.pending)
        self._graph: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter(
            {j.id: [d for d in j.depends if d in known] for j in jobs}
        )
        try:
            self._graph.prepare()
        except graphlib.CycleError as exc:
            raise OrchestrateError(
                f"the job graph has a cycle: {' -> '.join(exc.args[1])}"
            ) from None
        self.ready: set[str] = set(self._graph.get_ready())
        self.attempts = dict.fromkeys(self.pending, 0)
        self.not_before: dict[str, float] = {}
        self.results: dict[str, JobResult] = {}

    def start(self, job: Job[T]) -> None:
        self.ready.discard(job.id)
        del self.pending[job.id]
        self.attempts[job.id] += 1

    def finish(self, job: Job[T], outcome: JobResult) -> None:
        """Record the final outcome; dependants become ready whatever it was (they
        look at their dependencies' outcomes themselves)."""
        self.ready.discard(job.id)
        self.pending.pop(job.id, None)
        self.results[job.id] = outcome
        self._graph.done(job.id)
        self.ready.update(self._graph.get_ready())

    def waiting_for_backoff(self) -> bool:
        now = time.monotonic()
        return any(self.not_before.get(j, 0) > now for j in self.ready)


def _result(future: Future[JobResult]) -> JobResult:
    try:
        return future.result()
    except EngineError as exc:
        return JobResult(ok=False, transient=True, detail=exc.message)
    except Exception as exc:  # a bug in one job must not sink the run
        return JobResult(ok=False, detail=f"internal error: {type(exc).__name__}: {exc}")


V = TypeVar("V")


class Lookahead(Generic[V]):
    """Work for jobs done before they have a slot, in the order they will start:
    waiting on the network (resolving, downloading) overlaps other jobs' compilers
    instead of holding a slot. At most `limit` results are held (they can be
    large); a job that starts before its work began does it itself (`take` says
    None), so a job never waits for work that is only queued."""

    def __init__(
        self,
        work: Sequence[tuple[str, Callable[[], V]]],
        *,
        workers: int,
        limit: int,
        cancel: Cancel,
    ) -> None:
        self._futures: dict[str, Future[V]] = {}
        self._gone: set[str] = set()  # taken or dropped before their work began
        self._lock = threading.Lock()
        self._permits = threading.Semaphore(max(1, limit))
        self._stop, self._cancel = threading.Event(), cancel
        self._threads = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ahead")
        rest = list(work)
        while rest and not self._stopped() and self._permits.acquire(blocking=False):
            key, fn = rest.pop(0)  # the first ones begin now, before any job can start
            self._futures[key] = self._threads.submit(fn)
        self._feeder = threading.Thread(target=self._feed, args=(rest,), daemon=True)
        self._feeder.start()

    def _stopped(self) -> bool:
        return self._stop.is_set() or self._cancel.event.is_set()

    def _feed(self, work: list[tuple[str, Callable[[], V]]]) -> None:
        for key, fn in work:
            while not self._permits.acquire(timeout=0.2):
                if self._stopped():
                    return
            with self._lock:
                if self._stopped() or key in self._gone:
                    self._permits.release()
                    if self._stopped():
                        return
                    continue
                self._futures[key] = self._threads.submit(fn)

    def take(self, key: str) -> V | None:
        """The work's result, waiting for it if it runs; None: do the work yourself."""
        future = self._pop(key)
        if future is None:
            return None
        try:
            return future.result()
        except Exception:  # the job does the work itself, and meets the error there
            return None
        finally:
            self._permits.release()

    def drop(self, key: str) -> None:
        """The job no longer needs its work (done, or it took the result already)."""
        future = self._pop(key)
        if future is not None:
            future.add_done_callback(lambda _f: self._permits.release())

    def _pop(self, key: str) -> Future[V] | None:
        with self._lock:
            self._gone.add(key)
            return self._futures.pop(key, None)

    def close(self) -> None:
        self._stop.set()
        self._feeder.join()
        self._threads.shutdown(wait=True, cancel_futures=True)
