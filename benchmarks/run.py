"""Run every benchmark and print one table of side-by-side ratios.

`benchmarks/run` is the entry point; it writes benchmarks/results.json and
benchmarks/headline.png. Figures are printed and recorded, never asserted.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks import cache, compilers, demo, freshness, images, openstack, scheduling, shards
from benchmarks.common import OUT, Row, machine, plot, print_table, save
from orchestrator.config import load_matrix
from orchestrator.config.matrix import expand
from orchestrator.images.build import image_tag
from tests.matrices import local_matrix_copy


def local_matrix() -> Path:
    return local_matrix_copy(OUT / "local.yaml", OUT / "index")


def image_rows(matrix_path: Path) -> list[Row]:
    print("== images (no-op refresh)", flush=True)
    rows = [freshness.refresh_noop(matrix_path)]
    print("== builder images: emulated vs native", flush=True)
    rows += images.emulated_vs_native()
    print("== builder images: a refresh after a stable update", flush=True)
    rows += images.refresh_after_update()
    print("== the demo from nothing: an empty engine, registry and caches", flush=True)
    rows.append(demo.from_nothing())
    return rows


def main() -> int:
    started = time.perf_counter()
    shutil.rmtree(OUT / "index", ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ORCHESTRATE_CACHE_DIR", str(OUT / "cache"))
    print(f"machine: {machine()}", flush=True)
    matrix_path = local_matrix()
    matrix = load_matrix(matrix_path)
    amd, arm = (image_tag(matrix, p) for p in expand(matrix))
    rows: list[Row] = []
    # Read first: a missing earlier run stops here, not after every other benchmark.
    from_last = openstack.saved_rows() if "--openstack-from-last" in sys.argv[1:] else None

    rows += image_rows(matrix_path)
    print("== wheel cache headline", flush=True)
    requirements = cache.pins()
    report = cache.fill_cache(matrix_path, requirements)
    rows.append(cache.headline(matrix_path, arm, matrix.index.root, requirements))
    emulation = cache.native_vs_emulated(report)
    rows.append(emulation)
    rows.append(cache.reproducibility(requirements, report))
    print("== plans", flush=True)
    cold, warm, counts = freshness.plans()
    rows += [cold, warm, counts]
    rows.append(cache.work_avoided({"amd64": amd, "arm64": arm}))
    print("== scheduling", flush=True)
    rows += scheduling.makespan()
    rows += [
        scheduling.overhead(amd, matrix_path),
        scheduling.native_first(emulation.ratio),
    ]
    print("== native compiler under emulation (long: libsass fully emulated)", flush=True)
    rows += compilers.compilers()
    print("== publish", flush=True)
    rows += list(freshness.publish_store())
    if from_last is not None:  # the long run, done on its own before
        rows += from_last
    elif "--skip-openstack" not in sys.argv[1:]:
        print("== OpenStack's constraints, end to end (long)", flush=True)
        measured = openstack.openstack()
        openstack.save_rows(measured)
        rows += measured
        print("== a night across runners: two shards at once, one merge (long)", flush=True)
        two, reports = shards.two_runners(single_root=OUT / "openstack-index")
        rows += two + shards.split_by_budget(reports) + shards.opendev_scale(reports)

    print()
    print_table(rows)
    path = save(rows, started)
    headline = next(r for r in rows if r.name.startswith("HEADLINE"))
    image = plot(headline, emulation)
    print(
        f"\nwrote {path}"
        + (f" and {image}" if image else "")
        + f" in {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
