"""The real job: OpenStack's 575 constraints on debian-bookworm amd64 + arm64 (emulated).

Run from empty caches (index pages, sdists, build dependencies, durations; the
builder images are made first and timed as their own stage), then again to
show that a night with nothing new builds nothing. Figures come from the run's
own report: wall time, time per stage, the share of job time spent outside
the build phase, and the jobs' wall time against its lower bound.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import CONSTRAINTS, OUT, REPO, Row, orchestrate_build, sh

MATRIX = REPO / "examples" / "openstack.yaml"
SLOTS = 2  # examples/openstack.yaml: one local engine with 2 slots


def _matrix(root: Path, path: Path = OUT / "openstack.yaml") -> Path:
    text = MATRIX.read_text()
    old = "root: .orchestrate/openstack-wheelhouse"
    assert old in text, f"{old!r} is not in {MATRIX}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace(old, f"root: {root}"))
    return path


def _build(matrix: Path, name: str, cache: Path) -> tuple[float, dict[str, Any], str]:
    report = OUT / f"openstack-{name}.json"
    started = time.perf_counter()
    env = {**os.environ, "ORCHESTRATE_CACHE_DIR": str(cache)}
    done = orchestrate_build(matrix, CONSTRAINTS, OUT / "openstack-work", report, env=env)
    took = time.perf_counter() - started
    if not report.is_file():
        raise RuntimeError(f"the OpenStack build left no report:\n{done.stdout}\n{done.stderr}")
    return took, json.loads(report.read_text()), done.stdout[-4000:]


def figures(report: dict[str, Any]) -> dict[str, float]:
    """Job-time shares and the lower bound, from one report's job records."""
    ran = [j for j in report["jobs"] if j.get("phase_seconds")]
    job_time = sum(float(j["duration"]) for j in ran)
    build = [float(j["phase_seconds"].get("build", 0.0)) for j in ran]
    bound = max([*build, sum(build) / SLOTS]) if build else 0.0
    phases = {"fetch": 0.0, "build": 0.0, "smoke": 0.0, "system": 0.0}
    for job in ran:
        for name, seconds in job["phase_seconds"].items():
            phases[name] = phases.get(name, 0.0) + float(seconds)
    phases["containers and copies"] = job_time - sum(phases.values())
    return {
        **{f"phase {k}": v for k, v in phases.items()},
        "job_time": job_time,
        "build_time": sum(build),
        "outside_share": (job_time - sum(build)) / job_time if job_time else 0.0,
        "bound": bound,
        "jobs_wall": float(report.get("stages", {}).get("jobs", 0.0)),
        "ahead": sum(float(j.get("ahead_seconds", 0.0)) for j in ran),
    }


def openstack() -> list[Row]:
    cache, root = OUT / "openstack-cache", OUT / "openstack-index"
    for folder in (cache, root, OUT / "openstack-work"):
        shutil.rmtree(folder, ignore_errors=True)
    matrix = _matrix(root)
    wall, report, tail = _build(matrix, "first", cache)
    print(tail, flush=True)
    again, second, _ = _build(matrix, "second", cache)
    return [*rows_of(wall, report, again, second), stateless(root, cache)]


def _state(root: Path, cache: Path) -> Path:
    """The published state as a night on a CI system leaves it: the index root with
    what planning learned (durations, builder probes) in its facts folder."""
    state = OUT / "stateless-state"
    shutil.rmtree(state, ignore_errors=True)
    shutil.copytree(root, state, symlinks=True)
    facts = state / ".orchestrate-facts"
    shutil.copytree(cache / "probes", facts / "probes", dirs_exist_ok=True)
    if (cache / "durations.json").is_file():
        shutil.copy(cache / "durations.json", facts / "durations.json")
    return state


def stateless(root: Path, cache: Path) -> Row:
    """A second night on an empty runner: `ci-step plan` restores the published state
    (ORCHESTRATE_STATE, an rsync path) into an empty index root and cache, with no
    engine to reach, and plans; nothing left to build means no shard."""
    state = _state(root, cache)
    runner = OUT / "stateless-runner"
    shutil.rmtree(runner, ignore_errors=True)
    matrix = _matrix(runner / "index", runner / "openstack.yaml")
    env = {
        **os.environ,
        "ORCHESTRATE_STATE": str(state),
        "ORCHESTRATE_CACHE_DIR": str(runner / "cache"),
        "DOCKER_HOST": f"unix://{runner}/no-engine.sock",
        "MATRIX": str(matrix),
        "REQUIREMENTS": str(CONSTRAINTS),
    }
    started = time.perf_counter()
    done = sh("orchestrate", "ci-step", "plan", cwd=runner, env=env, check=False)
    took = time.perf_counter() - started
    shards = json.loads((runner / "shards.json").read_text()) if done.returncode == 0 else None
    ok = shards == {"include": []}
    return Row(
        "OpenStack: second night on an empty runner, plan from the published state",
        took,
        None,
        "s",
        None,
        "< 60 s, nothing to build",
        ok and took < 60,
        f"ci-step plan (restore by rsync, plan, shards): exit {done.returncode}, "
        f"shards {json.dumps(shards) if shards is not None else done.stderr[-300:]}",
    )


def rows_of(wall: float, report: dict[str, Any], again: float, second: dict[str, Any]) -> list[Row]:
    """The table's rows from the two runs' wall times and reports."""
    fig = figures(report)
    counts = report["summary"]
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in report.get("stages", {}).items())
    items = sum(1 for d in report["plan"] if d["action"] == "build")
    categories = ", ".join(f"{k} {v}" for k, v in sorted(counts.get("categories", {}).items()))
    ratio = fig["jobs_wall"] / fig["bound"] if fig["bound"] else None
    night = wall - float(report.get("stages", {}).get("images", 0.0))
    per_phase = ", ".join(
        f"{k.removeprefix('phase ')} {v:.0f} s" for k, v in fig.items() if k.startswith("phase ")
    )
    modes: dict[str, int] = {}
    for j in report["jobs"]:
        if j.get("emulated") and j["status"] == "built":
            modes[j.get("mode") or "emulated"] = modes.get(j.get("mode") or "emulated", 0) + 1
    emulated = ", ".join(f"{n} {m}" for m, n in sorted(modes.items())) or "none"
    return [
        Row(
            "OpenStack: 575 pins x 2 platforms from empty caches, wall time",
            wall,
            None,
            "s",
            None,
            "< 90 min",
            wall < 5400,
            f"{items} build items: built {counts['built']}, shared {counts['shared']}, "
            f"failed {counts['failed']} ({categories or 'none'}); stages: {stages}; "
            f"arm64 jobs built: {emulated}",
        ),
        Row(
            "OpenStack: the night without the images stage (builders present)",
            night,
            None,
            "s",
            None,
            "<= 240 s",
            night <= 240,
            "wall time less the images stage, from empty job caches (index pages, sdists, "
            "build dependencies, durations)",
        ),
        Row(
            "OpenStack: job time by phase",
            fig["job_time"],
            None,
            "s",
            None,
            "-",
            ok=True,
            note=f"{per_phase}; build environments made ahead of the jobs' slots, overlapped "
            f"with other jobs' builds (not job time): {fig['ahead']:.0f} s",
        ),
        Row(
            "OpenStack: job time outside the build phase",
            fig["outside_share"] * 100,
            None,
            "%",
            None,
            "< 20%",
            fig["outside_share"] < 0.20,
            f"{fig['job_time'] - fig['build_time']:.0f} s of {fig['job_time']:.0f} s job time "
            "(fetch, smoke test, system step, containers, copies); the native compiler "
            "shortens the build phase, so this share grows while the job time falls",
        ),
        Row(
            "OpenStack: jobs wall time / lower bound",
            fig["jobs_wall"],
            fig["bound"],
            "s",
            ratio,
            "<= 1.25x",
            ratio is not None and ratio <= 1.25,
            f"bound = max(longest build phase, build phases / {SLOTS} slots)",
        ),
        Row(
            "OpenStack: second run (nothing new)",
            again,
            wall,
            "s",
            wall / again if again else None,
            "< 30 s",
            again < 30 and second["summary"]["built"] == 0,
            f"built {second['summary']['built']}, cached {second['summary']['cached']}",
        ),
    ]


SAVED = OUT / "openstack-rows.json"


def save_rows(rows: list[Row]) -> None:
    SAVED.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "rows": [asdict(r) for r in rows],
            },
            indent=1,
        )
    )


def saved_rows() -> list[Row]:
    """The rows of the last standalone run (`python -m benchmarks.openstack`), noted as such;
    on a fresh clone, which has no such file, the OpenStack rows of the committed
    benchmarks/results.json."""
    if SAVED.is_file():
        data = json.loads(SAVED.read_text())
    else:
        last = json.loads((REPO / "benchmarks" / "results.json").read_text())
        rows = [r for r in last["rows"] if str(r["name"]).startswith("OpenStack:")]
        if not rows:
            raise SystemExit("--openstack-from-last: no earlier OpenStack run to take rows from")
        data = {"date": last["date"], "rows": rows}
    rows = [Row(**r) for r in data["rows"]]
    for row in rows:
        row.note = f"{row.note} [from the OpenStack run of {data['date']}]".strip()
    return rows


if __name__ == "__main__":
    from benchmarks.common import print_table

    OUT.mkdir(parents=True, exist_ok=True)
    if "--stateless-only" in sys.argv[1:]:  # on the state the last full run left
        print_table([stateless(OUT / "openstack-index", OUT / "openstack-cache")])
        sys.exit(0)
    measured = openstack()
    save_rows(measured)
    print_table(measured)
