"""Builder images: an emulated builder against its native twin, same packages.

Both are built from the bases already on the engine with `images build --force`
(no cached layer: a forced build starts from the base), each alone on the
machine, with an empty cache of the native parts an emulated builder gets (the
cross toolchain and the tool venvs), as on a new host. `python -m
benchmarks.images` runs these rows alone.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks.common import OUT, Row, print_table, sh
from orchestrator.core.paths import cache_dir
from tests.matrices import local_matrix_copy

TARGET = 2.0  # the emulated builder at most twice its native twin


def _build_one(matrix: Path, platform: str, cache: Path) -> float:
    """Seconds of `images build --force` for one platform, with `cache` as the cache
    folder (the bases of the usual one linked in, so nothing is bootstrapped)."""
    cache.mkdir(parents=True, exist_ok=True)
    bases = cache / "bases"
    if not bases.exists():
        bases.symlink_to(cache_dir() / "bases")
    started = time.perf_counter()
    command = ("orchestrate", "images", "build", "--force", "-m", str(matrix), "-p", platform)
    workdir = ("--workdir", str(OUT / "images-work"))
    sh(*command, *workdir, env={**os.environ, "ORCHESTRATE_CACHE_DIR": str(cache)})
    return time.perf_counter() - started


def emulated_vs_native() -> list[Row]:
    matrix = local_matrix_copy(
        OUT / "images.yaml",
        OUT / "images-index",
        {"repository: orchestrate/builder": "repository: orchestrate/bench-images"},
    )
    native = _build_one(matrix, "debian-bookworm-amd64", OUT / "images-cache-native")
    parts = OUT / "images-cache-emulated"
    shutil.rmtree(parts, ignore_errors=True)
    cold = _build_one(matrix, "debian-bookworm-arm64", parts)
    warm = _build_one(matrix, "debian-bookworm-arm64", parts)
    return [
        _row("with its native parts made (a new host)", cold, native),
        _row("native parts cached (the builder alone)", warm, native),
    ]


def _row(what: str, emulated: float, native: float) -> Row:
    ratio = emulated / native
    return Row(
        f"builder image: emulated arm64 vs native amd64, {what}",
        emulated,
        native,
        "s",
        ratio,
        f"<= {TARGET:.0f}x",
        ratio <= TARGET,
        "same packages, from existing bases, no cached layer; native parts: the cross "
        "toolchain and the tool venvs, made in a native container of the release",
    )


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = emulated_vs_native()
    print_table(rows)
    print(json.dumps([r.__dict__ for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
