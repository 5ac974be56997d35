"""Scheduling: makespan against its lower bound, per-job overhead against raw
`docker run`, and native-first placement against emulating everything."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from benchmarks.common import OUT, Row, sh
from orchestrator.config import EngineSpec, load_matrix
from orchestrator.config.matrix import expand
from orchestrator.core.layout import RunLayout
from orchestrator.engines.docker import DockerEngine
from orchestrator.engines.pool import EngineFactsCache, EnginePool
from orchestrator.jobs.builddeps import BuildDepCache
from orchestrator.jobs.graph import WheelJob
from orchestrator.jobs.phases.context import JobContext
from orchestrator.jobs.phases.inputs import JobInputs, input_tar
from orchestrator.jobs.phases.run import run_job
from orchestrator.jobs.sources import SdistCache, SdistRef
from orchestrator.model import Arch, JobKind
from orchestrator.plan.gather import tagsets_for
from orchestrator.plan.upstream import Upstream
from orchestrator.scheduler import Cancel, Job, JobResult, Placement, Scheduler
from tests.unit.fakes import FakeEngine


def _sleeper(emulation: float) -> Callable[[Job[float], Placement, Cancel], JobResult]:
    """Jobs that sleep their duration, times `emulation` when placed on an emulator."""

    def run(job: Job[float], placement: Placement, _cancel: Cancel) -> JobResult:
        engine = placement.engine
        assert isinstance(engine, FakeEngine)
        engine.work(job.payload * (emulation if placement.emulated else 1.0))
        return JobResult(ok=True)

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
        pool = EnginePool(engines, EngineFactsCache(None))
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
        Scheduler(EnginePool(engines, EngineFactsCache(None))).run(jobs, _sleeper(emulation))
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


def overhead(image: str, matrix_path: Path, jobs: int = 6) -> Row:
    """A real two-phase job (simplegeneric, fetch then network-off build) through the
    scheduler and the engine API, against a shell loop of the same two phases with
    the docker CLI (create, copy in, start, copy out, remove); both sequential."""
    matrix = load_matrix(matrix_path)
    platform = next(p for p in expand(matrix) if p.arch == Arch.AMD64)
    layout = RunLayout(OUT / "overhead-work")
    page = Upstream.of(matrix.index.upstream_index, layout.index_cache).project("simplegeneric")
    assert page is not None
    (found,) = [f for f in page.files("0.8.1") if not f.filename.endswith(".whl")]
    ref = SdistRef(found.filename, found.url, found.sha256)
    sdist = SdistCache(layout.sdists).get(ref)
    deps = BuildDepCache(layout.build_deps(platform.name, "3.11"))
    job = WheelJob(
        kind=JobKind.WHEEL,
        platform=platform,
        python="3.11",
        name="simplegeneric",
        version="0.8.1",
        sdist=ref,
        image_ref=image,
        timeout=600,
    )
    engine = DockerEngine(EngineSpec(name="local", slots=1))
    image_id = engine.image(image)
    assert image_id is not None
    tags = tagsets_for([platform], {})[(platform.name, "3.11")]

    def one(node: Job[int], placement: Placement, cancel: Cancel) -> JobResult:
        work = replace(job, image=image_id.id)
        ctx = JobContext(
            bases=layout.bases,
            engine=placement.engine,
            emulated=False,
            tags=tags,
            family=platform.family,
            out_dir=layout.job_dir(node.id),
            log_path=layout.job_log(node.id),
            cancel=cancel,
        )
        record = run_job(work, JobInputs(sdist=sdist, deps=deps, pins_key="bench"), ctx)
        return JobResult(ok=record.status == "built", detail=record.detail)

    one(
        Job("warm", Arch.AMD64, 1, 0),
        Placement(engine=engine, emulated=False, reason="warm"),
        Cancel(),
    )  # fills deps
    started = time.perf_counter()
    pool = EnginePool([engine], EngineFactsCache(None))
    results = Scheduler(pool).run([Job(f"t{i}", Arch.AMD64, 1, i) for i in range(jobs)], one)
    ours = time.perf_counter() - started
    assert all(r.ok for r in results.values()), [r.detail for r in results.values()]
    raw = _shell_loop(image_id.id, input_tar(sdist, deps.wheels(), (), ()), jobs)
    per_job = (ours - raw) / jobs * 1000
    return Row(
        f"per-job overhead vs shell loop of docker CLI, two-phase jobs ({jobs} jobs)",
        ours / jobs * 1000,
        raw / jobs * 1000,
        "ms",
        ours / raw,
        "<= 100 ms/job extra",
        per_job <= 100,
        f"orchestrator adds {per_job:.0f} ms per job (negative: faster than the CLI)",
    )


def _shell_loop(image: str, inputs: bytes, jobs: int) -> float:
    tar = OUT / "overhead-inputs.tar"
    tar.write_bytes(inputs)
    py, script = "/opt/orchestrate/py3.11/bin/python", "/usr/local/lib/orchestrate/job.py"
    flags = "-u 1000:1000 -w /job -e SOURCE_DATE_EPOCH=315532800 -e PYTHONHASHSEED=0"
    loop = (
        f"for i in $(seq {jobs}); do "
        f"c=$(docker create {flags} {image} {py} {script} fetch) && "
        f"docker cp - $c:/ < {tar} && docker start -a $c >/dev/null && "
        f"docker cp $c:/job - > {OUT}/job.tar && docker rm $c >/dev/null && "
        f"c=$(docker create --network none {flags} {image} {py} {script} build) && "
        f"docker cp - $c:/ < {OUT}/job.tar && docker start -a $c >/dev/null && "
        f"docker cp $c:/job/out - > {OUT}/out.tar && docker rm $c >/dev/null || exit 1; done"
    )
    started = time.perf_counter()
    sh("sh", "-c", loop)
    return time.perf_counter() - started
