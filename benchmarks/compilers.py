"""Emulated builds with the native cross compiler: the same C and C++ pins built
three ways in one run, native amd64, arm64 fully emulated and arm64 emulated with the
builder's native compiler; `python -m benchmarks.compilers` runs it alone."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from benchmarks.common import CONSTRAINTS, OUT, Row, orchestrate_build
from tests.matrices import local_matrix_copy

# C extensions PyPI has as sdists only, and two C++ ones built from source although
# PyPI has wheels for them: greenlet, and libsass (a heavy C++ library, ~70 files).
C_PINS = ("crcmod", "netifaces", "psycopg2")
CPP_PINS = ("greenlet", "libsass")
WAYS = {
    "native amd64": ("debian-bookworm-amd64", ""),
    "arm64 emulated": ("debian-bookworm-arm64", "native_compiler_except: [{names}]"),
    "arm64 native compiler": ("debian-bookworm-arm64", ""),
}


def pins() -> list[str]:
    wanted = {"crcmod": "1.7"}
    for line in CONSTRAINTS.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)===([^;\s]+)", line)
        if match and match.group(1).lower() in C_PINS + CPP_PINS:
            wanted[match.group(1).lower()] = match.group(2)
    return [f"{name}=={wanted[name]}" for name in C_PINS + CPP_PINS]


def build_way(way: str, requirements: list[str]) -> dict[str, dict[str, Any]]:
    """Build every pin one way, from empty (its own index root); jobs by name."""
    platform, builder = WAYS[way]
    folder = OUT / "compilers" / way.replace(" ", "-")
    names = ", ".join(r.split("==")[0] for r in requirements)
    extra = f"  {builder.format(names=names)}\n" if builder else ""
    matrix = local_matrix_copy(
        folder / "m.yaml",
        folder / "index",
        {"builder:\n": f"from_source: [{', '.join(CPP_PINS)}]\nbuilder:\n{extra}"},
    )
    reqs = folder / "requirements.txt"
    reqs.write_text("\n".join(requirements) + "\n")
    report = folder / "report.json"
    done = orchestrate_build(matrix, reqs, folder / "work", report, "-p", platform)
    if done.returncode != 0:
        raise RuntimeError(f"{way}: the build failed:\n{done.stdout}\n{done.stderr}")
    jobs = json.loads(report.read_text())["jobs"]
    return {j["name"]: j for j in jobs if j["status"] == "built"}


def _build_seconds(jobs: dict[str, dict[str, Any]], names: list[str]) -> float:
    return sum(float(jobs[n]["phase_seconds"]["build"]) for n in names)


def compilers() -> list[Row]:
    requirements = pins()
    names = [r.split("==")[0] for r in requirements]
    ways = {way: build_way(way, requirements) for way in WAYS}
    native = _build_seconds(ways["native amd64"], names)
    emulated = _build_seconds(ways["arm64 emulated"], names)
    crossed = _build_seconds(ways["arm64 native compiler"], names)
    modes = {j["mode"] for j in ways["arm64 native compiler"].values()}
    per_pin = ", ".join(
        f"{n} {ways['native amd64'][n]['phase_seconds']['build']:.0f}/"
        f"{ways['arm64 emulated'][n]['phase_seconds']['build']:.0f}/"
        f"{ways['arm64 native compiler'][n]['phase_seconds']['build']:.0f} s"
        for n in names
    )
    return [
        Row(
            f"build phase, {len(names)} C/C++ pins: arm64 fully emulated vs native amd64",
            emulated,
            native,
            "s",
            emulated / native,
            "(measured)",
            None,
            "the 6-10x this tool's field pays today",
        ),
        Row(
            f"build phase, {len(names)} C/C++ pins: arm64 emulated + native compiler vs "
            "native amd64",
            crossed,
            native,
            "s",
            crossed / native,
            "<= 2x",
            crossed / native <= 2 and modes == {"emulated (native compiler)"},
            f"native/emulated/native-compiler per pin: {per_pin}",
        ),
        Row(
            "build phase, arm64: native compiler vs fully emulated",
            crossed,
            emulated,
            "s",
            emulated / crossed,
            "(measured)",
            None,
            "the same pins, the same arm64 builder, on the amd64 engine",
        ),
    ]


if __name__ == "__main__":
    from benchmarks.common import print_table

    Path(OUT).mkdir(parents=True, exist_ok=True)
    print_table(compilers())
