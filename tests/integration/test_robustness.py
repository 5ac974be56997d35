"""Interrupts and crashes: SIGINT mid-build, kill -9 mid-publish, prune against PyPI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.core.errors import EXIT_INTERRUPTED
from orchestrator.engines.docker import DockerEngine
from orchestrator.images.pipeline import ImagesReport
from orchestrator.jobs.phases.build import LABEL_RUN
from orchestrator.publish.index import current_release, publish
from orchestrator.store import Provenance, Store
from tests.conftest import CliRunner
from tests.matrices import local_matrix_copy
from tests.wheelfactory import make_wheel

from .conftest import Local

AMD = "debian-bookworm-amd64"


def _matrix(tmp_path: Path) -> Path:
    return local_matrix_copy(tmp_path / "m.yaml", tmp_path / "w")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_build_keeps_what_finished_and_leaves_no_container(
    built_images: ImagesReport,
    local: Local,
    tmp_path: Path,
    engine: DockerEngine,
    *,
    sig: signal.Signals,
) -> None:
    """Several jobs; once one has finished, the signal: exit 130, the finished job is in
    the report and published, the running ones are cancelled, no container is left."""
    reqs = tmp_path / "r.txt"
    reqs.write_text("crcmod==1.7\nnetifaces==0.11.0\n")  # emulated netifaces: long
    work = tmp_path / "work"
    matrix = local_matrix_copy(tmp_path / "m.yaml", tmp_path / "wheels")
    proc = subprocess.Popen(
        ["orchestrate", "build", "-m", str(matrix), "-r", str(reqs), "--workdir", str(work)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not _finished_logs(work) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.5)
    assert _finished_logs(work), "no job finished in time"
    # This run's containers alone: the session beside this one runs jobs of its own.
    [run] = {log.parent.name for log in _finished_logs(work)}
    ours = f"{LABEL_RUN}={run}"
    assert engine.containers(ours), "nothing was running any more"
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, output
    assert engine.containers(ours) == []
    report = json.loads((work / "reports" / "latest.json").read_text())
    statuses = {j["job"]: j["status"] for j in report["jobs"]}
    built = [j for j, status in statuses.items() if status == "built"]
    assert built, statuses
    assert "cancelled" in statuses.values()
    stored = {r["filename"] for r in report["store"]}
    assert {statuses_wheel(report, j) for j in built} <= stored  # what finished is kept
    assert "Traceback" not in output


def _finished_logs(work: Path) -> list[Path]:
    return [p for p in work.glob("logs/*/*.log") if "\n== built after" in p.read_text()]


def statuses_wheel(report: dict[str, object], job_id: str) -> str:
    jobs = report["jobs"]
    assert isinstance(jobs, list)
    return str(next(j["wheel"] for j in jobs if j["job"] == job_id))


def _demo_versions(root: Path) -> set[str]:
    page = root / AMD / "simple" / "demo" / "index.html"
    return {v for v in ("1.0", "2.0") if f"demo-{v}-py3-none-any.whl" in page.read_text()}


def _pip_download(root: Path, version: str, dest: Path) -> bool:
    env = {
        **os.environ,
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_FIND_LINKS": "",
        "PIP_EXTRA_INDEX_URL": "",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            "-d",
            str(dest),
            "--index-url",
            (root / AMD / "simple").as_uri() + "/",
            f"demo=={version}",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    return done.returncode == 0


@pytest.mark.parametrize(
    ("point", "expect"), [("staged", {"1.0"}), ("renamed", {"1.0"}), ("switched", {"1.0", "2.0"})]
)
def test_kill_9_during_publish_leaves_a_usable_index(
    point: str, expect: set[str], tmp_path: Path, cli: CliRunner
) -> None:
    matrix = _matrix(tmp_path)
    store = Store(tmp_path / "w")
    with store.locked() as records:
        store.add(records, make_wheel(tmp_path / "a", "demo", "1.0"), [AMD], Provenance())
    publish(store, [AMD])
    previous = current_release(store.root, AMD)
    with store.locked() as records:
        store.add(records, make_wheel(tmp_path / "b", "demo", "2.0"), [AMD], Provenance())
    crashed = subprocess.run(
        ["orchestrate", "publish", "-m", str(matrix), "-p", AMD],
        env={**os.environ, "ORCHESTRATE_CRASH_AT": point},
        capture_output=True,
        text=True,
        check=False,
    )
    assert crashed.returncode == -signal.SIGKILL
    assert _demo_versions(store.root) == expect
    assert (current_release(store.root, AMD) == previous) == (expect == {"1.0"})
    for version in ("1.0", "2.0"):
        assert _pip_download(store.root, version, tmp_path / "dl") == (version in expect)
    # The store is consistent and the next publish completes and cleans up.
    assert {r.filename for r in store.records().values()} == {
        "demo-1.0-py3-none-any.whl",
        "demo-2.0-py3-none-any.whl",
    }
    result = cli("publish", "-m", str(matrix), "-p", AMD)
    assert result.code == 0
    assert _demo_versions(store.root) == {"1.0", "2.0"}
    assert not list((store.root / "releases" / AMD).glob(".staging-*"))


def test_prune_dry_run_lists_what_pypi_now_serves(tmp_path: Path, cli: CliRunner) -> None:
    matrix = _matrix(tmp_path)
    store = Store(tmp_path / "w")
    with store.locked() as records:
        six = make_wheel(tmp_path / "s", "six", "1.16.0", tag="py2.py3-none-any")
        store.add(records, six, [AMD], Provenance())
        store.add(
            records, make_wheel(tmp_path / "o", "orchestrate-only-here", "1.0"), [AMD], Provenance()
        )
    result = cli("prune", "--dry-run", "-m", str(matrix), "-p", AMD)
    assert result.code == 0, result.err
    rows = [line.split() for line in result.out.splitlines() if "six" in line]
    assert rows == [[AMD, "six-1.16.0-py2.py3-none-any.whl", "six-1.16.0-py2.py3-none-any.whl"]]
    assert "orchestrate-only-here" not in result.out
    assert "1 wheel(s) would be pruned" in result.out
    assert len(store.records()) == 2  # a dry run removes nothing
    result = cli("prune", "-m", str(matrix), "-p", AMD)
    assert result.code == 0
    assert [r.filename for r in store.records().values()] == [
        "orchestrate_only_here-1.0-py3-none-any.whl"
    ]


def test_a_closed_output_pipe_does_not_stop_the_run(
    built_images: ImagesReport, local: Local, tmp_path: Path
) -> None:
    """`orchestrate build | head -1`: the reader goes away at once; the run finishes,
    stores and reports what it built."""
    reqs = tmp_path / "r.txt"
    reqs.write_text("crcmod==1.7\n")
    matrix = local_matrix_copy(tmp_path / "m.yaml", tmp_path / "wheels")
    work = tmp_path / "work"
    command = (
        f"orchestrate build -m {matrix} -r {reqs} -p '*-amd64' --workdir {work} 2>&1 | head -c 1"
    )
    subprocess.run(["bash", "-c", command], check=False, timeout=600)
    report = json.loads((work / "reports" / "latest.json").read_text())
    assert [j["status"] for j in report["jobs"]] == ["built"]
    assert [s["outcome"] for s in report["store"]] == ["added"]
