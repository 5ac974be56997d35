"""A night across runners, on one machine: `plan --shards`, two `build --bundle`
processes at once (each with its own workdir and cache, sharing only the engine and
the registry, as two CI runners would), then one `merge`. The merged index must be
the one a single host publishes; bad bundles, missing shards, concurrent and killed
merges must leave the index consistent."""

from __future__ import annotations

import hashlib
import http.server
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import main
from orchestrator.images.pipeline import ImagesReport
from tests.matrices import local_matrix_copy

from .trees import comparable, served

AMD, ARM = "debian-bookworm-amd64", "debian-bookworm-arm64"
PLATFORMS = (AMD, ARM)
# A C extension (a wheel per arch) and a pure wheel (one file for both): a .zip sdist.
REQUIREMENTS = "crcmod==1.7\nsimplegeneric==0.8.1\n"


@dataclass(frozen=True)
class Night:
    root: Path
    matrix: Path
    plan: Path
    shards: dict[str, Any]
    bundles: dict[str, Path]
    single: Path  # the index root of the same night built on one host

    @property
    def index(self) -> Path:
        return self.root / "index"


def orchestrate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["orchestrate", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _shard_build(
    night_root: Path, matrix: Path, shard: str, *, select: tuple[str, ...] | None = None
) -> subprocess.Popen[str]:
    """One runner: its own workdir and cache folder. The cache starts as a copy of the
    session's, as a CI cache action restores one: with an empty one, a runner would
    make its builder again (its cross toolchain is cached) and leave the shared tag
    on an image that was never pushed, which later tests read. `select`: the runner
    plans for itself (`build -r -p`) instead of building the night's shard."""
    cache = night_root / f"cache-{shard}"
    shutil.copytree(os.environ["ORCHESTRATE_CACHE_DIR"], cache, symlinks=True)
    env = {**os.environ, "ORCHESTRATE_CACHE_DIR": str(cache)}
    what = select or ("--plan", str(night_root / "plan.json"), "--shard", shard)
    return subprocess.Popen(
        [
            *("orchestrate", "build", "-m", str(matrix), *what),
            *("--bundle", str(night_root / f"bundle-{shard}")),
            *("--workdir", str(night_root / f"work-{shard}")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


@pytest.fixture(scope="module")
def night(built_images: ImagesReport, tmp_path_factory: pytest.TempPathFactory) -> Night:
    root = tmp_path_factory.mktemp("shards")
    (root / "requirements.txt").write_text(REQUIREMENTS)
    matrix = local_matrix_copy(root / "matrix.yaml", root / "index")
    planned = orchestrate(
        "plan",
        "-m",
        str(matrix),
        "-r",
        str(root / "requirements.txt"),
        "--shards",
        "--save-plan",
        str(root / "plan.json"),
    )
    assert planned.returncode == 0, planned.stderr
    shards = json.loads(planned.stdout)
    runners = [_shard_build(root, matrix, entry["shard"]) for entry in shards["include"]]
    for runner in runners:
        out, _ = runner.communicate(timeout=1200)
        assert runner.returncode == 0, out
    single_matrix = local_matrix_copy(root / "single.yaml", root / "single-index")
    single = orchestrate(
        "build",
        "-m",
        str(single_matrix),
        "-r",
        str(root / "requirements.txt"),
        "--workdir",
        str(root / "work-single"),
    )
    assert single.returncode == 0, single.stdout + single.stderr
    bundles = {e["shard"]: root / f"bundle-{e['shard']}" for e in shards["include"]}
    return Night(root, matrix, root / "plan.json", shards, bundles, root / "single-index")


@pytest.fixture
def fresh(night: Night) -> Night:
    """The night's index root emptied: each test merges from nothing."""
    shutil.rmtree(night.index, ignore_errors=True)
    return night


Done = subprocess.CompletedProcess[str]


def merge(night: Night, *bundles: Path, extra: tuple[str, ...] = ()) -> Done:
    work = str(night.root / "work-merge")
    return orchestrate(
        "merge", "-m", str(night.matrix), "--workdir", work, *extra, *map(str, bundles)
    )


def test_plan_shards_gives_one_shard_per_arch_with_native_runners(night: Night) -> None:
    entries = {e["shard"]: e for e in night.shards["include"]}
    assert set(entries) == {"amd64", "arm64"}
    assert entries["arm64"]["labels"] == ["ubuntu-24.04-arm"]
    assert entries["amd64"]["platforms"] == [AMD]
    assert all(e["jobs"] == 2 and e["expected_seconds"] > 0 for e in entries.values())


def test_the_merged_index_is_the_single_host_index(fresh: Night) -> None:
    done = merge(fresh, *fresh.bundles.values())
    assert done.returncode == 0, done.stdout + done.stderr
    merged, single = served(fresh.index), served(fresh.single)
    assert set(merged) == set(PLATFORMS)
    for platform in PLATFORMS:
        assert comparable(merged[platform]) == comparable(single[platform]), platform
    store = json.loads((fresh.index / "store" / "manifest.json").read_text())["wheels"]
    pure = store["any/simplegeneric-0.8.1-py3-none-any.whl"]
    assert pure["platforms"] == sorted(PLATFORMS)  # built by both runners, kept once
    again = merge(fresh, *fresh.bundles.values())
    assert again.returncode == 0
    assert served(fresh.index) == merged
    assert json.loads((fresh.index / "store" / "manifest.json").read_text())["wheels"] == store


def test_bundles_planned_apart_merge_into_the_single_host_index(fresh: Night) -> None:
    """Each runner ran `build -r FILE -p GLOB --bundle` with no shared plan file:
    the plans differ only in their platforms, so merge joins them."""
    apart = fresh.root / "apart"
    apart.mkdir(exist_ok=True)
    reqs = str(fresh.root / "requirements.txt")
    runners = {
        arch: _shard_build(apart, fresh.matrix, arch, select=("-r", reqs, "-p", f"*-{arch}"))
        for arch in ("amd64", "arm64")
    }
    for runner in runners.values():
        out, _ = runner.communicate(timeout=1200)
        assert runner.returncode == 0, out
    bundles = [apart / f"bundle-{arch}" for arch in runners]
    plans = {json.loads((b / "plan.json").read_text())["identity"] for b in bundles}
    assert len(plans) == 2  # planned apart
    done = merge(fresh, *bundles)
    assert done.returncode == 0, done.stdout + done.stderr
    merged, single = served(fresh.index), served(fresh.single)
    assert set(merged) == set(PLATFORMS)
    for platform in PLATFORMS:
        assert comparable(merged[platform]) == comparable(single[platform]), platform
    other = merge(fresh, bundles[0], fresh.bundles["arm64"])  # one of each kind of plan
    assert other.returncode == 2, other.stdout + other.stderr
    assert "made apart" in other.stderr, other.stderr


def test_a_shard_over_its_budget_runs_as_parts_that_merge_into_one_platform(
    fresh: Night,
) -> None:
    """amd64's two jobs, expected at 50 s each, against a budget of one minute: two
    parts, one job each. Both merged give the one-host amd64 index; one alone
    publishes what it brought and names the other MISSING."""
    split = fresh.root / "split"
    split.mkdir(exist_ok=True)
    budget = "runners:\n  - {platforms: '*-amd64', labels: [ubuntu-24.04], budget_minutes: 1}\n"
    matrix = split / "matrix.yaml"
    matrix.write_text(fresh.matrix.read_text() + budget)
    cache = split / "plan-cache"
    shutil.copytree(os.environ["ORCHESTRATE_CACHE_DIR"], cache, symlinks=True)
    timed = {"crcmod|amd64|native": 50.0, "simplegeneric|amd64|native": 50.0}
    (cache / "durations.json").write_text(json.dumps(timed))
    planned = orchestrate(
        *("plan", "-m", str(matrix), "-r", str(fresh.root / "requirements.txt")),
        *("--shards", "--save-plan", str(split / "plan.json")),
        env={"ORCHESTRATE_CACHE_DIR": str(cache)},
    )
    assert planned.returncode == 0, planned.stderr
    names = [e["shard"] for e in json.loads(planned.stdout)["include"]]
    assert sorted(names) == ["amd64-1", "amd64-2", "arm64"]
    runners = [_shard_build(split, matrix, name) for name in ("amd64-1", "amd64-2")]
    for runner in runners:
        out, _ = runner.communicate(timeout=1200)
        assert runner.returncode == 0, out
    parts = [split / "bundle-amd64-1", split / "bundle-amd64-2"]
    jobs = [json.loads((b / "report.json").read_text())["jobs"] for b in parts]
    assert [len([j for j in js if j["kind"] == "wheel"]) for js in jobs] == [1, 1]
    merging = ("merge", "-m", str(matrix), "--plan", str(split / "plan.json"))
    alone = orchestrate(*merging, "--workdir", str(split / "w1"), str(parts[0]))
    assert alone.returncode == 1, alone.stdout + alone.stderr
    assert "MISSING shard amd64-2" in alone.stderr
    assert len(served(fresh.index)[AMD]) > 0  # what part 1 brought is published
    both = orchestrate(*merging, "--workdir", str(split / "w2"), *map(str, parts))
    assert both.returncode == 1, both.stdout + both.stderr  # arm64's shard is missing
    merged = served(fresh.index)
    assert comparable(merged[AMD]) == comparable(served(fresh.single)[AMD])


def test_a_missing_shard_publishes_the_others_and_is_named(fresh: Night) -> None:
    junit = fresh.root / "merge.xml"
    done = merge(
        fresh, fresh.bundles["amd64"], extra=("--format", "json", "--junit-xml", str(junit))
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "MISSING shard arm64" in done.stderr
    assert set(served(fresh.index)) == {AMD}
    summary = json.loads(done.stdout)
    shards = {s["name"]: s["status"] for s in summary["shards"]}
    assert shards == {"amd64": "merged", "arm64": "missing"}
    html = Path(summary["report"]).with_suffix(".html").read_text()
    assert '<b class="bad">missing</b>' in html
    assert junit.read_text().count("<testcase") == 2  # the amd64 shard's two jobs


def _copy(night: Night, shard: str, name: str) -> Path:
    target = night.root / "bad" / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(night.bundles[shard], target, symlinks=True)
    return target


def _manifest_edit(change: Callable[[dict[str, Any]], None], bundle: Path) -> None:
    path = bundle / "bundle.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _wheel(bundle: Path) -> Path:
    return next((bundle / "wheels").rglob("crcmod-*.whl"))


def _flip_wheel(bundle: Path) -> None:
    data = bytearray(_wheel(bundle).read_bytes())
    data[len(data) // 2] ^= 1
    _wheel(bundle).write_bytes(bytes(data))


def _relist_wheel(bundle: Path) -> None:  # the wheel's bytes and its manifest line edited
    _flip_wheel(bundle)
    relative = _wheel(bundle).relative_to(bundle).as_posix()
    digest = hashlib.sha256(_wheel(bundle).read_bytes()).hexdigest()
    _manifest_edit(lambda d: d["files"][relative].update(sha256=digest), bundle)


def _other_matrix(bundle: Path) -> None:
    _manifest_edit(lambda d: d.update(matrix="0" * 64), bundle)


def _escape(bundle: Path) -> None:
    outside = {"../../etc/passwd": {"sha256": "0" * 64, "size": 1}}
    _manifest_edit(lambda d: d["files"].update(outside), bundle)


def _link(bundle: Path) -> None:
    (bundle / "wheels" / "evil.whl").symlink_to("/etc/passwd")


def _report_edited(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    """The report edited and its manifest line made to match: only the checks of
    what the report says can refuse it."""

    def spoil(bundle: Path) -> None:
        path = bundle / "report.json"
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
        digest, size = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size
        _manifest_edit(lambda d: d["files"]["report.json"].update(sha256=digest, size=size), bundle)

    return spoil


def _bad_image(report: dict[str, Any]) -> None:
    report["images"][0].update(status="bogus", native_compiler={"evil": 1})


def _job_moved(report: dict[str, Any]) -> None:
    report["jobs"][0]["platform"] = AMD  # an arm64 shard's job claiming amd64


def _plan_edited(bundle: Path) -> None:
    _manifest_edit(lambda d: d.update(plan="1" * 64), bundle)


def _manifest_cut(bundle: Path) -> None:
    (bundle / "bundle.json").write_bytes((bundle / "bundle.json").read_bytes()[:300])


def _fifo(bundle: Path) -> None:
    """A FIFO where a listed wheel was, its manifest line made to match (size 0)."""
    wheel = _wheel(bundle)
    relative = wheel.relative_to(bundle).as_posix()
    wheel.unlink()
    os.mkfifo(wheel)
    empty = hashlib.sha256(b"").hexdigest()
    _manifest_edit(lambda d: d["files"][relative].update(sha256=empty, size=0), bundle)


BAD = {
    "a-fifo-at-a-listed-path": (_fifo, 2, "not a regular file"),
    "wheel-bytes-changed": (_flip_wheel, 4, "wheels/"),
    "wheel-and-manifest-edited": (_relist_wheel, 4, "not the file job"),
    "manifest-plan-edited": (_plan_edited, 4, "plan.json"),
    "another-matrix": (_other_matrix, 2, "another matrix"),
    "truncated-file-gone": (lambda b: _wheel(b).unlink(), 2, "truncated"),
    "truncated-manifest": (_manifest_cut, 2, "bundle.json"),
    "path-leaves-the-folder": (_escape, 2, "leaves the bundle"),
    "a-link-inside": (_link, 2, "link"),
    "an-unlisted-file": (lambda b: (b / "extra.whl").write_bytes(b"x"), 4, "extra.whl"),
    "report-image-not-of-the-schema": (_report_edited(_bad_image), 2, "report.json"),
    "report-job-of-another-platform": (_report_edited(_job_moved), 2, "not the bundle's"),
}


def _forged(edit: Callable[[Path, dict[str, Any]], None]) -> Callable[[Path], None]:
    """A bundle edited as a compromised runner would: the report and files changed,
    then every hash made to match again (each built job's sha256, its provenance
    statement's subject, the whole manifest). Only merge's own checks stand."""

    def spoil(bundle: Path) -> None:
        path = bundle / "report.json"
        report = json.loads(path.read_text())
        edit(bundle, report)
        for job in report["jobs"]:
            wheel = bundle / "wheels" / job["platform"] / str(job.get("wheel"))
            if job["status"] != "built" or not wheel.is_file():
                continue
            job["sha256"] = hashlib.sha256(wheel.read_bytes()).hexdigest()
            statement = bundle / "provenance" / job["platform"] / f"{wheel.name}.intoto.json"
            if statement.is_file():
                data = json.loads(statement.read_text())
                data["subject"][0].update(name=wheel.name, digest={"sha256": job["sha256"]})
                statement.write_text(json.dumps(data))
        path.write_text(json.dumps(report))
        files = {
            f.relative_to(bundle).as_posix(): {
                "sha256": hashlib.sha256(f.read_bytes()).hexdigest(),
                "size": f.stat().st_size,
            }
            for f in sorted(bundle.rglob("*"))
            if f.is_file() and f.name != "bundle.json"
        }
        _manifest_edit(lambda d: d.update(files=files), bundle)

    return spoil


def _job(report: dict[str, Any], project: str) -> dict[str, Any]:
    return next(j for j in report["jobs"] if j["name"] == project and j["kind"] == "wheel")


def _renamed(new: Callable[[str], str]) -> Callable[[Path, dict[str, Any]], None]:
    """crcmod's wheel (file, record and statement) under another name."""

    def edit(bundle: Path, report: dict[str, Any]) -> None:
        job = _job(report, "crcmod")
        old = bundle / "wheels" / job["platform"] / job["wheel"]
        job["wheel"] = new(job["wheel"])
        old.rename(old.with_name(job["wheel"]))
        statement = bundle / "provenance" / job["platform"]
        (statement / f"{old.name}.intoto.json").rename(statement / f"{job['wheel']}.intoto.json")
        runtime = bundle / "runtime" / job["platform"]
        (runtime / f"{old.name}.json").rename(runtime / f"{job['wheel']}.json")

    return edit


def _rezipped(
    project: str, change: Callable[[str, bytes], bytes | None]
) -> Callable[[Path, dict[str, Any]], None]:
    """The project's wheel rewritten member by member (None drops a member)."""

    def edit(bundle: Path, report: dict[str, Any]) -> None:
        job = _job(report, project)
        path = bundle / "wheels" / job["platform"] / job["wheel"]
        with zipfile.ZipFile(path) as old:
            members = [(i, old.read(i)) for i in old.infolist()]
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
            for info, data in members:
                kept = change(info.filename, data)
                if kept is not None:
                    out.writestr(info, kept)

    return edit


def _metadata_says(version: bytes) -> Callable[[str, bytes], bytes | None]:
    def change(name: str, data: bytes) -> bytes | None:
        return (
            data.replace(b"Version: 1.7", b"Version: " + version)
            if name.endswith("/METADATA")
            else data
        )

    return change


def _unplanned(_bundle: Path, report: dict[str, Any]) -> None:
    job = _job(report, "crcmod")
    fake = {**job, "job": f"{ARM}/notplanned==9.9", "name": "notplanned", "version": "9.9"}
    report["jobs"].append({**fake, "status": "failed", "wheel": None, "sha256": None})


def _smoke_failed(_bundle: Path, report: dict[str, Any]) -> None:
    _job(report, "crcmod")["smoke"]["passed"] = False


def _shares_a_foreign_wheel(_bundle: Path, report: dict[str, Any]) -> None:
    """arm64's crcmod claiming amd64's wheel, which the other bundle really holds."""
    job = _job(report, "crcmod")
    job.update(status="shared", wheel=job["wheel"].replace("aarch64", "x86_64"))


def _not_a_zip(bundle: Path, report: dict[str, Any]) -> None:
    job = _job(report, "crcmod")
    (bundle / "wheels" / job["platform"] / job["wheel"]).write_bytes(b"not a zip at all")


def _claims_amd64(bundle: Path, report: dict[str, Any]) -> None:
    """The arm64 bundle also claiming amd64, with a crcmod wheel of its own for it
    (built from altered sources), so that given first it would win over amd64's."""
    honest = bundle.parent.parent / "bundle-amd64"
    amd64 = _job(json.loads((honest / "report.json").read_text()), "crcmod")
    for folder in ("wheels", "provenance", "runtime"):
        shutil.copytree(honest / folder / AMD, bundle / folder / AMD)
    wheel = bundle / "wheels" / AMD / amd64["wheel"]
    _rezipped("crcmod", lambda n, d: d + b"\n" if n.endswith(".py") else d)(
        bundle, {"jobs": [{**amd64, "platform": AMD}]}
    )
    assert wheel.is_file()
    report["jobs"].append(amd64)
    report["platforms"] = [*report["platforms"], AMD]
    _manifest_edit(lambda d: d.update(platforms=[*d["platforms"], AMD]), bundle)


FORGED = {
    "an-unplanned-job": (_forged(_unplanned), "not one of the plan's build items"),
    "a-bundle-claiming-a-second-platform": (_forged(_claims_amd64), "claims"),
    "a-record-without-kind": (_forged(lambda _b, r: _job(r, "crcmod").pop("kind")), "kind"),
    "another-version-than-the-pin": (
        _forged(lambda _b, r: _job(r, "crcmod").update(version="1.8")),
        "not one of the plan's build items",
    ),
    "a-wheel-of-another-arch": (
        _forged(_renamed(lambda w: w.replace("aarch64", "x86_64"))),
        "does not install",
    ),
    "a-wheel-of-another-python": (
        _forged(_renamed(lambda w: w.replace("cp311", "cp39"))),
        "does not install",
    ),
    "a-rebuild-the-plan-never-decided": (
        _forged(_renamed(lambda w: w.replace("crcmod-1.7-", "crcmod-1.7-1-"))),
        "decided no rebuild",
    ),
    "metadata-that-is-not-the-file-name": (
        _forged(_rezipped("crcmod", _metadata_says(b"9.9"))),
        "METADATA says",
    ),
    "a-wheel-with-no-metadata": (
        _forged(_rezipped("crcmod", lambda n, d: None if n.endswith("/METADATA") else d)),
        "no readable METADATA",
    ),
    "a-metadata-zip-bomb": (
        _forged(
            _rezipped("crcmod", lambda n, d: b" " * (64 << 20) if n.endswith("/METADATA") else d)
        ),
        "no readable METADATA",
    ),
    "a-wheel-that-is-not-a-zip": (_forged(_not_a_zip), "not a readable zip"),
    "a-built-record-whose-smoke-test-failed": (_forged(_smoke_failed), "smoke test did not pass"),
    "a-shared-record-of-another-platforms-wheel": (
        _forged(_shares_a_foreign_wheel),
        "does not install",
    ),
}


@pytest.mark.parametrize("case", sorted(FORGED))
def test_a_forged_but_intact_bundle_is_refused_and_nothing_is_published(
    fresh: Night, case: str
) -> None:
    """Every hash matches, so only what merge checks for itself refuses it: the plan's
    items, the platform's tags, the wheel's own METADATA, the smoke verdict."""
    assert merge(fresh, fresh.bundles["amd64"]).returncode == 1  # arm64 missing: exit 1
    before = served(fresh.index)
    manifest = (fresh.index / "store" / "manifest.json").read_bytes()
    spoil, named = FORGED[case]
    bad = _copy(fresh, "arm64", case)
    spoil(bad)
    done = merge(fresh, fresh.bundles["amd64"], bad)
    assert done.returncode == 2, done.stdout + done.stderr
    assert str(bad) in done.stderr, done.stderr
    assert named in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert served(fresh.index) == before
    assert (fresh.index / "store" / "manifest.json").read_bytes() == manifest


def test_two_bundles_giving_other_bytes_for_one_pure_wheel_are_both_refused(
    fresh: Night,
) -> None:
    """Whatever their order on the command line: neither wins, both are named, and
    nothing is said to be published."""
    bad = _copy(fresh, "arm64", "pure-wheel-other-bytes")
    _forged(
        _rezipped("simplegeneric", lambda n, d: d + b"\n# forged\n" if n.endswith(".py") else d)
    )(bad)
    for order in ((fresh.bundles["amd64"], bad), (bad, fresh.bundles["amd64"])):
        done = merge(fresh, *order)
        assert done.returncode == 2, done.stdout + done.stderr
        assert str(bad) in done.stderr
        assert str(fresh.bundles["amd64"]) in done.stderr
        assert "simplegeneric-0.8.1-py3-none-any.whl" in done.stderr
        assert "published" not in done.stdout + done.stderr
        assert "--prefer" in done.stderr
        assert not fresh.index.exists() or not served(fresh.index)
    honest = fresh.bundles["amd64"]
    for order in ((honest, bad), (bad, honest)):
        chosen = merge(fresh, *order, extra=("--prefer", str(honest)))
        assert chosen.returncode == 0, chosen.stdout + chosen.stderr
        pure = {
            platform: sha
            for platform, tree in served(fresh.index).items()
            for path, sha in tree.items()
            if path.endswith("simplegeneric-0.8.1-py3-none-any.whl")
        }
        assert set(pure) == set(PLATFORMS), pure  # both platforms serve it ...
        wheel = next((honest / "wheels").rglob("simplegeneric-*.whl"))
        assert set(pure.values()) == {hashlib.sha256(wheel.read_bytes()).hexdigest()}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_bundle_is_refused_by_name_and_the_index_is_untouched(
    fresh: Night, case: str
) -> None:
    assert merge(fresh, fresh.bundles["amd64"]).returncode == 1  # arm64 missing: exit 1
    before = served(fresh.index)
    manifest = (fresh.index / "store" / "manifest.json").read_bytes()
    spoil, code, named = BAD[case]
    bad = _copy(fresh, "arm64", case)
    spoil(bad)
    done = merge(fresh, fresh.bundles["amd64"], bad)
    assert done.returncode == code, done.stdout + done.stderr
    assert str(bad) in done.stderr, done.stderr
    assert named in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert served(fresh.index) == before
    assert (fresh.index / "store" / "manifest.json").read_bytes() == manifest


def test_an_older_nights_bundle_needs_allow_stale(fresh: Night) -> None:
    reqs = fresh.root / "newer.txt"
    reqs.write_text(REQUIREMENTS + "six==1.16.0\n")  # six: a wheel upstream, a new decision
    newer = fresh.root / "newer-plan.json"
    made = orchestrate(
        "plan", "-m", str(fresh.matrix), "-r", str(reqs), "--save-plan", str(newer), "--shards"
    )
    assert made.returncode == 0, made.stderr
    refused = merge(fresh, *fresh.bundles.values(), extra=("--plan", str(newer)))
    assert refused.returncode == 2
    assert "older night" in refused.stderr
    assert "six==1.16.0" in refused.stderr
    assert not fresh.index.exists() or not served(fresh.index)
    stale = ("--plan", str(newer), "--allow-stale", "--format", "json")
    allowed = merge(fresh, *fresh.bundles.values(), extra=stale)
    assert allowed.returncode == 0, allowed.stderr
    assert {s["status"] for s in json.loads(allowed.stdout)["shards"]} == {"stale"}


def _merge_child(night: Night) -> None:
    args = [
        "-q",
        "merge",
        "-m",
        str(night.matrix),
        "--workdir",
        str(night.root / "work-kill"),
        *map(str, night.bundles.values()),
    ]
    try:
        main(args)
    except SystemExit as exc:
        os._exit(exc.code if isinstance(exc.code, int) else 1)
    os._exit(0)


def test_merges_at_once_and_killed_merges_leave_a_consistent_index(fresh: Night) -> None:
    fork = multiprocessing.get_context("fork")
    together = [fork.Process(target=_merge_child, args=(fresh,)) for _ in range(2)]
    for child in together:
        child.start()
    for child in together:
        child.join(120)
        assert child.exitcode == 0
    complete = served(fresh.index)
    assert set(complete) == set(PLATFORMS)
    rng = random.Random(25)
    killed = rounds = 0
    while killed < 20:  # 20 merges killed part way (a merge that ends first is not counted)
        rounds += 1
        assert rounds <= 100, f"only {killed} merges were still running when killed"
        if rounds % 2:
            shutil.rmtree(fresh.index, ignore_errors=True)  # a merge from nothing, killed
        child = fork.Process(target=_merge_child, args=(fresh,))
        child.start()
        time.sleep(rng.uniform(0.0, 0.25))
        stopped = child.pid is not None and child.is_alive()
        if stopped:
            os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
            killed += 1
        child.join(60)
        assert stopped or child.exitcode == 0  # a merge after a killed one works
        if fresh.index.exists():
            served(fresh.index)  # every listed file exists and matches its sha256
    assert merge(fresh, *fresh.bundles.values()).returncode == 0
    after = served(fresh.index)
    assert {p: comparable(t) for p, t in after.items()} == {
        p: comparable(t) for p, t in complete.items()
    }


class _IgnoresAccept(http.server.SimpleHTTPRequestHandler):
    """A static host (GitHub Pages, S3): a folder's index.html whatever is asked."""

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def static_host(fresh: Night) -> Iterator[str]:
    assert merge(fresh, *fresh.bundles.values()).returncode == 0
    handler = partial(_IgnoresAccept, directory=str(fresh.index))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_pip_installs_from_a_static_host_that_ignores_accept(
    static_host: str, tmp_path: Path
) -> None:
    """pip asks for PEP 691 JSON first; such a host answers the PEP 503 HTML page."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--platform",
            "linux_x86_64",
            "--python-version",
            "3.11",
            "--index-url",
            f"{static_host}/{AMD}/simple/",
            "-d",
            str(tmp_path),
            "crcmod==1.7",
            "simplegeneric==0.8.1",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "crcmod-1.7-cp311-cp311-linux_x86_64.whl",
        "simplegeneric-0.8.1-py3-none-any.whl",
    ]
    import requests

    page = requests.get(
        f"{static_host}/{AMD}/simple/crcmod/",
        timeout=10,
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    assert page.headers["Content-Type"].startswith("text/html")  # what such a host serves
    listing = requests.get(f"{static_host}/{AMD}/simple/crcmod/index.json", timeout=10).json()
    assert [f["filename"] for f in listing["files"]] == ["crcmod-1.7-cp311-cp311-linux_x86_64.whl"]


@pytest.mark.parametrize("case", ["a-foreign-site", "a-marker-that-is-a-dangling-link"])
def test_a_root_that_is_not_ours_is_refused_before_anything_is_written(
    fresh: Night, case: str
) -> None:
    fresh.index.mkdir(parents=True)
    outside = fresh.root / "outside-target"
    outside.unlink(missing_ok=True)
    if case == "a-foreign-site":
        (fresh.index / "index.html").write_text("<html>somebody's site</html>")
    else:
        (fresh.index / ".orchestrate-index").symlink_to(outside)
    done = merge(fresh, *fresh.bundles.values())
    assert done.returncode == 2, done.stdout + done.stderr
    assert str(fresh.index) in done.stderr
    assert not (fresh.index / "store").exists()
    assert not outside.exists()
    shutil.rmtree(fresh.index)
