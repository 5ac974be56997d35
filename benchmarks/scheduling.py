"""Scheduling: makespan against its lower bound, per-job overhead against raw
`docker run`, and native-first placement against emulating everything."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from benchmarks.common import Row, sh
from orchestrator.config import Arch, EngineSpec
from orchestrator.engines import RunRequest
from orchestrator.engines.docker import DockerEngine
from orchestrator.engines.pool import EnginePool, ProbeCache
from orchestrator.scheduler import Cancel, Job, Outcome, Placement, Scheduler
from tests.unit.fakes import FakeEngine


def _sleeper(emulation: float) -> Callable[[Job[float], Placement, Cancel], Outcome]:
    """Jobs that sleep their duration, times `emulation` when placed on an emulator."""

    def run(job: Job[float], placement: Placement, _cancel: Cancel) -> Outcome:
        engine = placement.engine
        assert isinstance(engine, FakeEngine)
        engine.work(job.payload * (emulation if placement.emulated else 1.0))
        return Outcome(ok=True)

    return run


def makespan() -> list[Row]:
    """Longest-first against first-come-first-served, each against the lower bound.
    The jobs arrive as a requirements file lists them: alphabetically, which puts
    long jobs anywhere; here the longest ones arrive last, as a sorted list can."""
    rng = random.Random(7)
    durations = sorted(round(rng.uniform(0.05, 0.6), 3) for _ in range(36))
    durations += [1.2, 1.4, 1.6, 1.8]  # the few heavy C++ builds, listed last
    jobs = [Job(f"j{i}", Arch.AMD64, d, d) for i, d in enumerate(durations)]
    bound = max(*durations, sum(durations) / 4)
    rows = []
    for longest_first, name in ((True, "longest first"), (False, "first come, first served")):
        engines = [FakeEngine("a", Arch.AMD64, slots=2), FakeEngine("b", Arch.AMD64, slots=2)]
        pool = EnginePool(engines, ProbeCache(None))
        started = time.perf_counter()
        Scheduler(pool, longest_first=longest_first).run(jobs, _sleeper(1.0))
        took = time.perf_counter() - started
        ratio = took / bound
        rows.append(
            Row(
                f"makespan / lower bound, {name} ({len(jobs)} jobs, 2 engines x 2 slots)",
                took,
                bound,
                "s",
                ratio,
                "<= 1.10x",
                ratio <= 1.10,
                "lower bound = max(longest job, total work / total slots)",
            )
        )
    return rows


def native_first(measured: float | None) -> Row:
    """`measured`: the native/emulated factor measured earlier in the same run."""
    emulation = measured or 6.0
    source = "measured above for real builds" if measured else "assumed: none measured"
    rng = random.Random(11)
    mixed = [
        (Arch.ARM64 if i % 2 else Arch.AMD64, round(rng.uniform(0.05, 0.3), 3)) for i in range(24)
    ]
    jobs = [Job(f"j{i}", arch, d, d) for i, (arch, d) in enumerate(mixed)]

    def run(engines: list[FakeEngine]) -> float:
        started = time.perf_counter()
        Scheduler(EnginePool(engines, ProbeCache(None))).run(jobs, _sleeper(emulation))
        return time.perf_counter() - started

    ours = run(
        [FakeEngine("amd", Arch.AMD64, 2, emulates=(Arch.ARM64,)), FakeEngine("arm", Arch.ARM64, 2)]
    )
    everything = run(
        [
            FakeEngine("amd", Arch.AMD64, 2, emulates=(Arch.ARM64,)),
            FakeEngine("amd2", Arch.AMD64, 2, emulates=(Arch.ARM64,)),
        ]
    )
    return Row(
        "mixed jobs: native-first vs emulate all arm64",
        ours,
        everything,
        "s",
        everything / ours,
        "> 1x",
        everything > ours,
        f"same 4 slots either way; emulated jobs take {emulation:.1f}x ({source})",
    )


def overhead(image: str, jobs: int = 15) -> Row:
    engine = DockerEngine(EngineSpec(name="local", slots=1))
    pool = EnginePool([engine], ProbeCache(None))

    def one(job: Job[int], placement: Placement, _cancel: Cancel) -> Outcome:
        request = RunRequest(image=image, command=("true",), platform=Arch.AMD64, network=False)
        with placement.engine.container(request) as box:
            outcome = box.start_and_wait(60, lambda _chunk: None)
        return Outcome(ok=outcome.exit_code == 0)

    sh("docker", "run", "--rm", image, "true")  # warm both paths the same way
    started = time.perf_counter()
    results = Scheduler(pool).run([Job(f"t{i}", Arch.AMD64, 1, i) for i in range(jobs)], one)
    ours = time.perf_counter() - started
    assert all(r.ok for r in results.values())
    started = time.perf_counter()
    sh("sh", "-c", f"for i in $(seq {jobs}); do docker run --rm --network none {image} true; done")
    raw = time.perf_counter() - started
    per_job = (ours - raw) / jobs * 1000
    return Row(
        f"per-job overhead vs shell loop of docker run ({jobs} jobs)",
        ours / jobs * 1000,
        raw / jobs * 1000,
        "ms",
        ours / raw,
        "<= 100 ms/job extra",
        per_job <= 100,
        f"orchestrator adds {per_job:.0f} ms per job (negative: faster than the CLI)",
    )
