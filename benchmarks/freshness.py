"""Freshness: no-op image refresh, cold and warm plans of the 575 OpenStack pins,
and publishing a synthetic store of 5,000 wheels over 6 platforms."""

from __future__ import annotations

import os
import random
import re
import shutil
import time
from pathlib import Path

from benchmarks.common import CONSTRAINTS, OUT, Row, sh
from orchestrator.config import load_matrix
from orchestrator.config.matrix import expand, select
from orchestrator.core.layout import RunLayout
from orchestrator.model import Action, PublishStatus
from orchestrator.plan.gather import make_plan
from orchestrator.plan.upstream import Upstream
from orchestrator.publish.index import publish
from orchestrator.store import Provenance, Store
from tests.wheelfactory import make_wheel

REPO = Path(__file__).resolve().parent.parent


def plans() -> tuple[Row, Row, Row]:
    matrix = load_matrix(REPO / "platforms.yaml")
    platforms = select(expand(matrix), ["debian-bookworm-*"])
    cache = OUT / "plan-cache"
    shutil.rmtree(cache, ignore_errors=True)
    os.environ["ORCHESTRATE_CACHE_DIR"] = str(cache)
    started = time.perf_counter()
    index = Upstream.of(matrix.index.upstream_index, RunLayout(OUT).index_cache)
    cold = make_plan(matrix, platforms, [CONSTRAINTS], upstream=index)
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    warm = make_plan(
        matrix,
        platforms,
        [CONSTRAINTS],
        upstream=Upstream.of(matrix.index.upstream_index, index.cache_dir.parent),
    )
    warm_s = time.perf_counter() - started
    assert warm.stats.requests == 0
    build = sum(1 for d in cold.decisions if d.action == Action.BUILD)
    upstream = sum(1 for d in cold.decisions if d.action == Action.UPSTREAM)
    return (
        Row(
            "cold plan, 575 pins x 2 platforms",
            cold_s,
            None,
            "s",
            None,
            "< 30 s",
            cold_s < 30,
            f"{cold.stats.requests} index requests",
        ),
        Row(
            "warm plan, 575 pins x 2 platforms",
            warm_s,
            cold_s,
            "s",
            cold_s / warm_s,
            "< 2 s",
            warm_s < 2,
            "0 requests: answers younger than index.cache_ttl",
        ),
        Row(
            "plan: items to build / served upstream",
            float(build),
            float(upstream),
            "items",
            None,
            "-",
            None,
            f"{build} builds of {len(cold.decisions)} decisions",
        ),
    )


def refresh_noop(matrix_path: Path) -> Row:
    sh(
        "orchestrate",
        "images",
        "refresh",
        "-m",
        str(matrix_path),
        "--workdir",
        str(OUT / "refresh"),
    )  # makes everything fresh and pushed
    started = time.perf_counter()
    done = sh(
        "orchestrate",
        "images",
        "refresh",
        "-m",
        str(matrix_path),
        "--workdir",
        str(OUT / "refresh"),
    )
    took = time.perf_counter() - started
    fresh = len(re.findall(r"^\S+\s+fresh\s", done.stdout, flags=re.M))
    return Row(
        "no-op `images refresh` (2 platforms, pushed)",
        took,
        None,
        "s",
        None,
        "< 3 s",
        took < 3,
        f"{fresh} platforms fresh, manifest unchanged",
    )


def publish_store() -> tuple[Row, Row]:
    root = OUT / "publish"
    shutil.rmtree(root, ignore_errors=True)
    store = Store(root)
    platforms = [f"distro{i}-release-{a}" for i in range(3) for a in ("amd64", "arm64")]
    rng = random.Random(3)
    source = OUT / "wheels"
    shutil.rmtree(source, ignore_errors=True)
    with store.locked() as records:
        for i in range(5000):
            platform = rng.choice(platforms)
            tag = (
                "py3-none-any"
                if i % 5 == 0
                else f"cp311-cp311-linux_{'aarch64' if platform.endswith('arm64') else 'x86_64'}"
            )
            wheel = make_wheel(source / str(i % 50), f"pkg{i % 1200}", f"1.{i}", tag=tag)
            store.add(
                records, wheel, platforms if tag.endswith("any") else [platform], Provenance()
            )
    started = time.perf_counter()
    publish(store, platforms)
    full = time.perf_counter() - started
    with store.locked() as records:
        store.add(
            records,
            make_wheel(source / "x", "newpkg", "1.0", tag="cp311-cp311-linux_x86_64"),
            [platforms[0]],
            Provenance(),
        )
    started = time.perf_counter()
    results = publish(store, platforms)
    one = time.perf_counter() - started
    assert [r.status for r in results].count(PublishStatus.PUBLISHED) == 1
    return (
        Row(
            "full publish, 5,000 wheels x 6 platforms",
            full,
            None,
            "s",
            None,
            "< 5 s",
            full < 5,
            "hard links + PEP 503/691/658 files, one syncfs, atomic swap",
        ),
        Row(
            "publish with one platform changed",
            one,
            full,
            "s",
            full / one,
            "< 0.5 s",
            one < 0.5,
            "unchanged platforms are skipped by content digest",
        ),
    )
