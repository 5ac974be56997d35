"""The scheduler on fake engines: placement, slots, LPT, retries, fail-fast, cancel."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.core.errors import OrchestrateError
from orchestrator.engines.pool import EngineFactsCache, EnginePool
from orchestrator.model import Arch
from orchestrator.scheduler import Cancel, Job, JobResult, Lookahead, Placement, Scheduler
from tests.unit.fakes import FakeEngine, Recorder


def _pool(*engines: FakeEngine) -> EnginePool:
    return EnginePool(engines, EngineFactsCache(None))


def _sleeper(job: Job[float], placement: Placement, cancel: Cancel) -> JobResult:
    engine = placement.engine
    assert isinstance(engine, FakeEngine)
    engine.work(job.payload)
    return JobResult(ok=True, data=(engine.name, placement.emulated))


def test_native_first_and_emulation_only_without_native() -> None:
    amd = FakeEngine("amd", Arch.AMD64, slots=2, emulates=(Arch.ARM64,))
    arm = FakeEngine("arm", Arch.ARM64, slots=1)
    jobs = [Job(f"a{i}", Arch.ARM64, 1, 0.05) for i in range(3)]
    results = Scheduler(_pool(amd, arm)).run(jobs, _sleeper)
    assert {r.data for r in results.values()} == {("arm", False)}  # waits for the native slot
    alone = Scheduler(_pool(amd)).run(jobs, _sleeper)
    assert {r.data for r in alone.values()} == {("amd", True)}
    assert all(r.placement and "no native arm64" in r.placement.reason for r in alone.values())


def test_emulate_when_busy_spills_over() -> None:
    amd = FakeEngine("amd", Arch.AMD64, slots=2, emulates=(Arch.ARM64,))
    arm = FakeEngine("arm", Arch.ARM64, slots=1)
    jobs = [Job(f"a{i}", Arch.ARM64, 1, 0.1) for i in range(3)]
    results = Scheduler(_pool(amd, arm), emulate_when_busy=True).run(jobs, _sleeper)
    assert ("amd", True) in {r.data for r in results.values()}


def test_slots_bound_concurrency() -> None:
    engine = FakeEngine("amd", Arch.AMD64, slots=2)
    jobs = [Job(f"j{i}", Arch.AMD64, 1, 0.05) for i in range(6)]
    Scheduler(_pool(engine)).run(jobs, _sleeper)
    assert engine.peak == 2


def test_longest_job_first_keeps_makespan_near_bound() -> None:
    # Shortest-first (or first-come with the long job last) ends at 0.8 s: one slot
    # takes two short jobs and then the long one. Longest-first ends at 0.6 s.
    durations = [0.1, 0.1, 0.1, 0.1, 0.6]
    engine = FakeEngine("amd", Arch.AMD64, slots=2)
    jobs = [Job(f"j{i}", Arch.AMD64, d, d) for i, d in enumerate(durations)]
    seen = Recorder()
    started = time.monotonic()
    Scheduler(_pool(engine), progress=seen).run(jobs, _sleeper)
    elapsed = time.monotonic() - started
    bound = max(*durations, sum(durations) / 2)
    assert seen.of("start")[0] == "j4"  # the longest expected job goes first
    assert elapsed < bound * 1.2, f"makespan {elapsed:.2f}s, bound {bound:.2f}s"


def test_ready_jobs_start_in_descending_expected_order() -> None:
    engine = FakeEngine("amd", Arch.AMD64, slots=1)
    jobs = [Job(f"j{i}", Arch.AMD64, e, 0.0) for i, e in enumerate([3, 9, 1, 5])]
    seen = Recorder()
    Scheduler(_pool(engine), progress=seen).run(jobs, _sleeper)
    assert seen.of("start") == ["j1", "j3", "j0", "j2"]


def test_graph_runs_dependencies_first_and_dependants_after() -> None:
    engine = FakeEngine("amd", Arch.AMD64, slots=2)
    jobs = [
        Job("wheel", Arch.AMD64, 100, 0.0, depends=("build-dep",)),
        Job("build-dep", Arch.AMD64, 1, 0.05),
        Job("other", Arch.AMD64, 50, 0.0),
    ]
    seen = Recorder()
    results = Scheduler(_pool(engine), progress=seen).run(jobs, _sleeper)
    order = seen.of("start")
    assert order.index("build-dep") < order.index("wheel")
    assert all(r.ok for r in results.values())


def test_a_cycle_is_refused_before_anything_runs() -> None:
    engine = FakeEngine("amd", Arch.AMD64)
    jobs = [Job("a", Arch.AMD64, 1, 0.0, ("b",)), Job("b", Arch.AMD64, 1, 0.0, ("a",))]
    with pytest.raises(OrchestrateError, match="cycle"):
        Scheduler(_pool(engine)).run(jobs, _sleeper)


def test_deadline_stops_new_jobs_and_keeps_what_finished() -> None:
    engine = FakeEngine("amd", Arch.AMD64, slots=1)
    jobs = [Job(f"j{i}", Arch.AMD64, 10 - i, 0.2) for i in range(4)]
    scheduler = Scheduler(_pool(engine), deadline=time.monotonic() + 0.3)
    results = scheduler.run(jobs, _sleeper)
    finished = [j for j, r in results.items() if r.ok]
    assert finished == ["j0", "j1"]  # j1 started before the deadline and was let finish
    assert all(results[j].cancelled for j in ("j2", "j3"))
    assert "deadline" in results["j3"].detail


def test_transient_failures_retry_and_compile_errors_do_not() -> None:
    calls: dict[str, int] = {}

    def flaky(job: Job[str], placement: Placement, cancel: Cancel) -> JobResult:
        calls[job.id] = calls.get(job.id, 0) + 1
        if job.payload == "transient" and calls[job.id] < 2:
            return JobResult(ok=False, transient=True, detail="connection lost")
        return JobResult(ok=job.payload != "compile", detail=job.payload)

    engine = FakeEngine("amd", Arch.AMD64)
    jobs = [
        Job("t", Arch.AMD64, 1, "transient"),
        Job("c", Arch.AMD64, 1, "compile"),
        Job("ok", Arch.AMD64, 1, "fine"),
    ]
    results = Scheduler(_pool(engine), backoff=0.01).run(jobs, flaky)
    assert results["t"].ok
    assert results["t"].attempts == 2
    assert not results["c"].ok
    assert calls["c"] == 1
    assert results["ok"].ok


def test_fail_fast_stops_scheduling_not_running() -> None:
    def fail_first(job: Job[int], placement: Placement, cancel: Cancel) -> JobResult:
        time.sleep(0.02)
        return JobResult(ok=job.payload != 0)

    engine = FakeEngine("amd", Arch.AMD64, slots=1)
    jobs = [Job(f"j{i}", Arch.AMD64, 10 - i, i) for i in range(4)]
    results = Scheduler(_pool(engine), fail_fast=True).run(jobs, fail_first)
    assert not results["j0"].ok
    assert all(results[f"j{i}"].cancelled for i in (1, 2, 3))


def test_cancel_runs_hooks_and_cancels_the_rest() -> None:
    killed = threading.Event()

    def long_job(job: Job[int], placement: Placement, cancel: Cancel) -> JobResult:
        stop = threading.Event()

        def kill() -> None:
            killed.set()
            stop.set()

        cancel.on_cancel(kill)
        stop.wait(5)
        return JobResult(ok=False, cancelled=True, detail="killed")

    engine = FakeEngine("amd", Arch.AMD64, slots=1)
    scheduler = Scheduler(_pool(engine))
    threading.Timer(0.1, scheduler.cancel.cancel).start()
    started = time.monotonic()
    results = scheduler.run([Job(f"j{i}", Arch.AMD64, 1, i) for i in range(3)], long_job)
    assert killed.is_set()
    assert time.monotonic() - started < 2
    assert sum(r.cancelled for r in results.values()) == 3


def test_no_engine_for_arch_is_reported() -> None:
    engine = FakeEngine("amd", Arch.AMD64)  # emulates nothing
    results = Scheduler(_pool(engine)).run([Job("x", Arch.ARM64, 1, 0.0)], _sleeper)
    assert "no engine runs arm64" in results["x"].detail


def test_expected_durations_scale_for_emulation(tmp_path: Path) -> None:
    from orchestrator.jobs.durations import EMULATION_FACTOR, Durations

    durations = Durations(tmp_path / "d.json")
    durations.record("netifaces", "arm64", 10.0, emulated=False)
    durations.save()
    again = Durations(tmp_path / "d.json")
    assert again.expected("netifaces", "arm64", emulated=False) == 10.0
    assert again.expected("netifaces", "arm64", emulated=True) == 10.0 * EMULATION_FACTOR
    again.record("netifaces", "arm64", 95.0, emulated=True)  # measured beats converted
    assert again.expected("netifaces", "arm64", emulated=True) == 95.0
    again.record("crcmod", "arm64", 30.0, emulated=True)
    assert again.expected("crcmod", "arm64", emulated=False) == 30.0 / EMULATION_FACTOR
    assert again.expected("unknown", "arm64", emulated=True) > again.expected(
        "unknown", "arm64", emulated=False
    )


def test_the_emulation_factor_is_learned_per_engine_and_arch(tmp_path: Path) -> None:
    """s390x and riscv64 are slower under QEMU than arm64: each (engine, arch) learns
    its own factor from packages built both natively and emulated."""
    from orchestrator.jobs.durations import EMULATION_FACTOR, Durations

    durations = Durations(tmp_path / "d.json")
    for name in ("a", "b"):
        durations.record(name, "amd64", 10.0, emulated=False)
    durations.record("a", "s390x", 200.0, emulated=True, engine="local")
    durations.record("a", "arm64", 70.0, emulated=True, engine="local")
    assert durations.factor("s390x", "local") == 20.0
    assert durations.factor("arm64") == 7.0
    assert durations.factor("riscv64") == EMULATION_FACTOR  # nothing learned yet
    # A package never built for s390x is expected at its amd64 time times s390x's factor.
    assert durations.expected("b", "s390x", emulated=True) == 200.0
    assert durations.expected("b", "arm64", emulated=True) == 70.0
    durations.record("b", "s390x", 100.0, emulated=True, engine="local")  # 10x this time
    assert durations.factor("s390x", "local") == round(0.7 * 20.0 + 0.3 * 10.0, 2)
    durations.record("c", "s390x", 5000.0, emulated=True, engine="local")  # no native time
    assert durations.factor("s390x", "local") == round(0.7 * 20.0 + 0.3 * 10.0, 2)
    durations.save()
    assert Durations(tmp_path / "d.json").factor("s390x") == durations.factor("s390x")


def _recording(log: list[str], key: str, gate: threading.Event | None = None) -> Callable[[], str]:
    def work() -> str:
        log.append(key)
        if gate is not None:
            assert gate.wait(5)
        return f"made {key}"

    return work


def test_lookahead_works_in_order_and_holds_at_most_its_limit() -> None:
    began: list[str] = []
    keys = ["a", "b", "c", "d"]
    ahead = Lookahead(
        [(k, _recording(began, k)) for k in keys], workers=2, limit=2, cancel=Cancel()
    )
    try:
        deadline = time.monotonic() + 5
        while len(began) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert began == ["a", "b"]  # two results held: c waits for a permit
        assert ahead.take("a") == "made a"
        while len(began) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert began == ["a", "b", "c"]
        ahead.drop("b")  # a job that did not need its result frees its permit too
        while len(began) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert began == keys
        assert ahead.take("d") == "made d"
    finally:
        ahead.close()


def test_lookahead_never_makes_a_job_wait_for_work_that_has_not_begun() -> None:
    began: list[str] = []
    gate = threading.Event()
    work = [("slow", _recording(began, "slow", gate)), ("next", _recording(began, "next"))]
    ahead = Lookahead(work, workers=1, limit=1, cancel=Cancel())
    try:
        started = time.monotonic()
        assert ahead.take("next") is None  # queued behind "slow": the job does it itself
        assert time.monotonic() - started < 1
        gate.set()
        assert ahead.take("slow") == "made slow"  # running: waited for
        time.sleep(0.2)
        assert began == ["slow"]  # "next" was taken away, never made
        assert ahead.take("slow") is None  # a retry makes its own
    finally:
        ahead.close()


def test_lookahead_failure_or_cancel_leaves_the_work_to_the_job() -> None:
    def broken() -> str:
        raise RuntimeError("bug")

    cancel = Cancel()
    ahead = Lookahead([("x", broken)], workers=1, limit=1, cancel=cancel)
    time.sleep(0.2)
    assert ahead.take("x") is None
    ahead.close()
    began: list[str] = []
    cancel.cancel()
    ahead = Lookahead([("y", _recording(began, "y"))], workers=1, limit=1, cancel=cancel)
    ahead.close()
    assert ahead.take("y") is None
    assert began == []
