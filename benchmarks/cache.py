"""The wheel cache effect, native vs emulated builds, and the work the plan avoids."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

from benchmarks.common import CONSTRAINTS, OUT, Row, orchestrate_build, sh
from orchestrator.publish.serve import make_server
from tests.builders import in_builder
from tests.matrices import local_matrix_copy

ARM = "debian-bookworm-arm64"
AMD = "debian-bookworm-amd64"
PIP = "/opt/orchestrate/py3.11/bin/pip"
# C extensions published as sdists only: crcmod from examples/requirements.txt, and
# three that OpenStack's constraints pin, which the example builders can compile.
COMPILED = ("crcmod", "netifaces", "psycopg2", "systemd-python")


def pins() -> list[str]:
    wanted = {"crcmod": "1.7"}
    for line in CONSTRAINTS.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)===([^;\s]+)", line)
        if match and match.group(1).lower() in COMPILED:
            wanted[match.group(1).lower()] = match.group(2)
    return [f"{name}=={wanted[name]}" for name in COMPILED]


def fill_cache(matrix: Path, requirements: list[str]) -> dict[str, object]:
    reqs = OUT / "headline-requirements.txt"
    reqs.write_text("\n".join(requirements) + "\n")
    report = OUT / "headline-report.json"
    done = orchestrate_build(matrix, reqs, OUT / "work", report)
    if done.returncode not in (0, 4):
        raise RuntimeError(f"filling the cache failed:\n{done.stdout}\n{done.stderr}")
    data: dict[str, object] = json.loads(report.read_text())
    return data


def _install(image: str, args: str) -> float:
    """Seconds of the pip install alone, with Debian 12's own pip (23.0.1) as a user of
    that platform has it: a fresh `python3 -m venv`, made before the timing starts."""
    script = (
        f"python3.11 -m venv /tmp/v >/dev/null && t0=$(date +%s%N) && "
        f"/tmp/v/bin/pip install -q --no-deps --target /tmp/t {args} && "
        'echo "elapsed-ns $(( $(date +%s%N) - t0 ))"'
    )
    done = in_builder(image, "arm64", script, ("--network", "host"))
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split("elapsed-ns")[-1]) / 1e9


def headline(matrix: Path, image: str, index_root: Path, requirements: list[str]) -> Row:
    server = make_server(index_root, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    index = f"http://127.0.0.1:{server.server_address[1]}/{ARM}/simple/"
    try:
        # As a user does: our index as an extra one, beside PyPI.
        wheels = _install(image, f"--extra-index-url {index} {' '.join(requirements)}")
        # What a user does without the cache: pip's defaults (build requirements
        # come as wheels), from the upstream index, which has sdists only for these.
        sdists = _install(image, " ".join(requirements))
    finally:
        server.shutdown()
    ratio = sdists / wheels
    return Row(
        f"HEADLINE arm64 (emulated) pip install of {len(requirements)} C-extension pins",
        wheels,
        sdists,
        "s",
        ratio,
        ">= 10x",
        ratio >= 10,
        "Debian 12's own pip (23.0.1, a fresh `python3 -m venv`) on both sides; ours = "
        "with our index as --extra-index-url; alternative = plain `pip install --no-deps "
        "PIN` from PyPI (compiles the sdists), same builder, same pins; OpenStack "
        "measured 4.5x on Kolla",
    )


def native_vs_emulated(report: dict[str, object]) -> Row:
    jobs = [j for j in report["jobs"] if j["status"] == "built"]  # type: ignore[attr-defined]
    native = {j["name"]: j["duration"] for j in jobs if not j["emulated"]}
    emulated = {j["name"]: j["duration"] for j in jobs if j["emulated"]}
    both = sorted(set(native) & set(emulated))
    n, e = sum(native[x] for x in both), sum(emulated[x] for x in both)
    return Row(
        f"same wheels built native amd64 vs emulated arm64 ({len(both)} pins)",
        n,
        e,
        "s",
        e / n if n else None,
        "(measured)",
        None,
        ", ".join(both),
    )


# A labelled sample of OpenStack's constraints: four pins PyPI serves as wheels for
# both platforms and two it serves as sdists only (the plan's build items).
SAMPLE = ("six", "pbr", "netaddr", "markupsafe", "netifaces", "pydotplus")


def sample_pins() -> list[str]:
    found = {}
    for line in CONSTRAINTS.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)===([^;\s]+)", line)
        if match and match.group(1).lower() in SAMPLE:
            found[match.group(1).lower()] = f"{match.group(1)}=={match.group(2)}"
    return [found[name] for name in SAMPLE]


def _build_everything(image: str, arch: str, pins: list[str]) -> float:
    """OpenStack's old method for one platform: build every pin from its sdist (build
    requirements as wheels, as pip does by default), to delete later what PyPI has."""
    names = ",".join(p.split("==")[0] for p in pins)
    started = time.perf_counter()
    sh(
        "docker",
        "run",
        "--rm",
        "--platform",
        f"linux/{arch}",
        image,
        "sh",
        "-c",
        f"{PIP} wheel -q --no-deps --no-binary {names} -w /tmp/w {' '.join(pins)}",
    )
    return time.perf_counter() - started


def work_avoided(images: dict[str, str]) -> Row:
    """Measured, both ways, on the labelled sample: build everything on both platforms,
    against `orchestrate build` (plan, then build only what PyPI cannot serve)."""
    pins = sample_pins()
    everything = sum(_build_everything(image, arch, pins) for arch, image in images.items())
    reqs = OUT / "sample-requirements.txt"
    reqs.write_text("\n".join(pins) + "\n")
    matrix = local_matrix_copy(OUT / "sample.yaml", OUT / "index-sample")
    sh("rm", "-rf", str(OUT / "index-sample"))
    started = time.perf_counter()
    done = orchestrate_build(matrix, reqs, OUT / "work-sample", OUT / "sample-report.json")
    ours = time.perf_counter() - started
    report = json.loads((OUT / "sample-report.json").read_text())
    built = sum(1 for j in report["jobs"] if j["status"] in ("built", "shared"))
    return Row(
        f"plan + build missing vs build all then delete (sample of {len(pins)} pins)",
        ours,
        everything,
        "s",
        everything / ours,
        "> 1x",
        ours < everything and done.returncode == 0,
        f"measured on both platforms, arm64 emulated; sample: {', '.join(pins)}; "
        f"ours built {built} of {2 * len(pins)} items, the rest upstream",
    )


def reproducibility(requirements: list[str], first: dict[str, object]) -> Row:
    """Build the same sdists again from scratch (amd64) and compare the wheels' bytes."""
    again = local_matrix_copy(OUT / "rebuild.yaml", OUT / "index-rebuild")
    reqs = OUT / "headline-requirements.txt"
    reqs.write_text("\n".join(requirements) + "\n")
    report = OUT / "rebuild-report.json"
    sh("rm", "-rf", str(OUT / "index-rebuild"))
    orchestrate_build(again, reqs, OUT / "work-rebuild", report, "-p", "*-amd64")
    second = json.loads(report.read_text())

    def hashes(data: dict[str, object]) -> dict[str, str]:
        jobs = data["jobs"]
        assert isinstance(jobs, list)
        return {
            j["name"]: j["sha256"] for j in jobs if j["platform"] == AMD and j["status"] == "built"
        }

    before, after = hashes(first), hashes(second)
    both = sorted(set(before) & set(after))
    same = [n for n in both if before[n] == after[n]]
    differ = [n for n in both if before[n] != after[n]]
    return Row(
        "reproducible rebuilds: identical wheels (amd64, from scratch)",
        float(len(same)),
        float(len(both)),
        "wheels",
        None,
        "(measured)",
        None,
        "SOURCE_DATE_EPOCH set; differing: " + (", ".join(differ) or "none"),
    )
