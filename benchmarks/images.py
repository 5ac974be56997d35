"""Builder images: an emulated builder against its native twin, same packages; and a
refresh in place after a stable update against a builder made from its base.

Both are built from the bases already on the engine with `images build --force`
(no cached layer: a forced build starts from the base), each alone on the
machine, with an empty cache of the native parts an emulated builder gets (the
cross toolchain and the tool venvs), as on a new host; then the emulated builder
the old way (`builder.native_packages: false`: `apt-get install`, the tool venvs and
the trust store under QEMU), and
both arm64 builders compared: `dpkg-query -W` and the headline pins' wheels.
`python -m benchmarks.images` runs these rows alone, then the demo's from nothing
(benchmarks/demo.py): the three rows of the images' goals, side by side.

The refresh rows then take each of those builders back to the day before an update
(`tests/builders.py`: one package one version older, created a month ago), time
`images refresh --max-age 7` on it, and compare it with the builder made from its
base: `dpkg-query -W` and the wheels of the headline pins, built in each.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks import cache as headline
from benchmarks import demo
from benchmarks.common import OUT, Row, orchestrate_build, print_table, sh
from orchestrator.config import load_matrix
from orchestrator.config.matrix import expand
from orchestrator.core.paths import cache_dir
from orchestrator.images.build import image_tag
from tests.builders import go_back_one_update, package_versions
from tests.matrices import local_matrix_copy

TARGET = 2.0  # the emulated builder at most twice its native twin
REFRESH_TARGET = 60.0  # seconds a platform for a refresh after a stable update
REPOSITORY = {"repository: orchestrate/builder": "repository: orchestrate/bench-images"}
# The same builder with `apt-get install` under QEMU, as before its packages were
# installed by the engine's own apt and dpkg.
EMULATED_WAY = {
    "repository: orchestrate/builder": "repository: orchestrate/bench-images-emulated-way",
    "builder:\n": "builder:\n  native_packages: false\n",
}
EMULATED = "debian-bookworm-arm64"
CACHES = {
    "debian-bookworm-amd64": OUT / "images-cache-native",
    "debian-bookworm-arm64": OUT / "images-cache-emulated",
}


def _build_one(matrix: Path, platform: str, cache: Path) -> float:
    """Seconds of `images build --force` for one platform, with `cache` as the cache
    folder (the bases of the usual one linked in, so nothing is bootstrapped)."""
    cache.mkdir(parents=True, exist_ok=True)
    bases = cache / "bases"
    (cache_dir() / "bases").mkdir(parents=True, exist_ok=True)
    if not bases.is_symlink() and not bases.exists():  # a link left earlier may dangle
        bases.symlink_to(cache_dir() / "bases")
    started = time.perf_counter()
    command = ("orchestrate", "images", "build", "--force", "-m", str(matrix), "-p", platform)
    workdir = ("--workdir", str(OUT / "images-work"))
    sh(*command, *workdir, env={**os.environ, "ORCHESTRATE_CACHE_DIR": str(cache)})
    return time.perf_counter() - started


def _matrix(name: str = "images", replaced: dict[str, str] = REPOSITORY) -> Path:
    return local_matrix_copy(OUT / f"{name}.yaml", OUT / f"{name}-index", replaced)


def emulated_vs_native() -> list[Row]:
    matrix = _matrix()
    native = _build_one(matrix, "debian-bookworm-amd64", CACHES["debian-bookworm-amd64"])
    parts = CACHES[EMULATED]
    shutil.rmtree(parts, ignore_errors=True)
    cold = _build_one(matrix, EMULATED, parts)
    warm = _build_one(matrix, EMULATED, parts)
    emulated_way = _build_one(_matrix("images-emulated-way", EMULATED_WAY), EMULATED, parts)
    return [
        _row("with its native parts made (a new host)", cold, native),
        _row("native parts cached (the builder alone)", warm, native),
        _row("all of it under QEMU (native_packages: false)", emulated_way, native),
        _two_ways(),
    ]


def _tag(matrix_file: Path, platform: str) -> str:
    matrix = load_matrix(matrix_file)
    return image_tag(matrix, next(p for p in expand(matrix) if p.name == platform))


def _two_ways() -> Row:
    """The arm64 builder whose packages were installed natively against the one whose
    `apt-get install` ran under QEMU: the same packages, the same wheels."""
    natively_tag = _tag(_matrix(), EMULATED)
    emulated_tag = _tag(_matrix("images-emulated-way", EMULATED_WAY), EMULATED)
    same_packages = package_versions(natively_tag) == package_versions(emulated_tag)
    env = {**os.environ, "ORCHESTRATE_CACHE_DIR": str(CACHES[EMULATED])}
    natively = _wheels(EMULATED, "native-packages", env, REPOSITORY)
    emulated = _wheels(EMULATED, "emulated-way", env, EMULATED_WAY)
    identical = sum(natively.get(name) == digest for name, digest in emulated.items())
    return Row(
        "arm64 builder, packages installed natively = under QEMU (packages, wheels)",
        float(identical),
        float(len(natively)),
        "wheels",
        None,
        "identical",
        same_packages and identical == len(natively) == len(emulated) > 0,
        f"dpkg-query -W identical: {same_packages}; "
        f"{identical} of {len(natively)} headline wheels byte-identical",
    )


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


def refresh_after_update() -> list[Row]:
    """Per platform: the refresh's time, then whether it equals the builder from its base."""
    rows = []
    for platform in CACHES:
        rows += _refresh_rows(platform)
    return rows


def _refresh_rows(platform: str) -> list[Row]:
    env = {**os.environ, "ORCHESTRATE_CACHE_DIR": str(CACHES[platform])}
    matrix = _matrix()
    tag = _tag(matrix, platform)
    expected = package_versions(tag)
    from_base = _wheels(platform, "from-base", env)
    change = go_back_one_update(tag)
    started = time.perf_counter()
    command = ["orchestrate", "images", "refresh", "--max-age", "7", "--allow-partial"]
    command += ["-m", str(matrix)]
    done = sh(*command, "-p", platform, "--workdir", str(OUT / "images-work"), env=env)
    seconds = time.perf_counter() - started
    shown = f"{change.package} {change.old} -> {change.new}" in done.stdout
    same_packages = package_versions(tag) == expected
    refreshed = _wheels(platform, "refreshed", env)
    arch = platform.rsplit("-", 1)[-1]
    identical = sum(from_base.get(name) == digest for name, digest in refreshed.items())
    return [
        Row(
            f"refresh after a stable update, {arch}: previous builder one package older",
            seconds,
            None,
            "s",
            None,
            f"<= {REFRESH_TARGET:.0f} s",
            seconds <= REFRESH_TARGET and shown,
            f"upgraded in place, incl. push; changed {change} (shown: {shown})",
        ),
        Row(
            f"refreshed {arch} builder = builder from its base (packages, wheels)",
            float(identical),
            float(len(from_base)),
            "wheels",
            None,
            "identical",
            same_packages and identical == len(from_base) == len(refreshed) > 0,
            f"dpkg-query -W identical: {same_packages}; "
            f"{identical} of {len(from_base)} headline wheels byte-identical",
        ),
    ]


def _wheels(
    platform: str, name: str, env: dict[str, str], replaced: dict[str, str] = REPOSITORY
) -> dict[str, str]:
    """The headline pins built from empty in the platform's builder (of the matrix with
    `replaced`): sha256 by file."""
    folder = OUT / "images-wheels" / f"{platform}-{name}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    matrix = local_matrix_copy(folder / "m.yaml", folder / "index", replaced)
    reqs = folder / "requirements.txt"
    reqs.write_text("\n".join(headline.pins()) + "\n")
    done = orchestrate_build(
        matrix, reqs, folder / "work", folder / "report.json", "-p", platform, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"{platform} {name}: the build failed:\n{done.stdout}\n{done.stderr}")
    wheels = (folder / "index").rglob("*.whl")
    return {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in wheels}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = emulated_vs_native()
    rows += refresh_after_update()
    rows.append(demo.from_nothing())
    print_table(rows)
    print(json.dumps([r.__dict__ for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
