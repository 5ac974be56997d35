"""Shared plumbing: timing, rows of the table, the result file and the plot."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
CONSTRAINTS = REPO / "examples" / "openstack" / "upper-constraints.txt"


@dataclass
class Row:
    """One line of the table: ours against the alternative, measured in the same run."""

    name: str
    ours: float
    theirs: float | None
    unit: str
    ratio: float | None
    target: str
    ok: bool | None
    note: str = ""


def sh(*args: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, **kwargs)  # type: ignore[call-overload,no-any-return]


def orchestrate_build(
    matrix: Path,
    requirements: Path,
    workdir: Path,
    report: Path,
    *options: str,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`orchestrate build` as a user runs it, with its JSON report at `report`."""
    return sh(
        "orchestrate",
        "build",
        "-m",
        str(matrix),
        "-r",
        str(requirements),
        "--workdir",
        str(workdir),
        "--report",
        str(report),
        *options,
        check=False,
        env=env,
    )


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB, {cpu}"


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "%":
        return f"{value:.1f}%"
    return f"{value:g} {unit}".strip()


TABLE_HEAD = ("benchmark", "ours", "alternative", "ratio", "target", "ok")


def table_cells(r: Row) -> tuple[str, ...]:
    """One row as the table prints it (also the docs' benchmark page)."""
    return (
        r.name,
        fmt(r.ours, r.unit),
        fmt(r.theirs, r.unit),
        "-" if r.ratio is None else f"{r.ratio:.2f}x",
        r.target,
        "-" if r.ok is None else ("yes" if r.ok else "NO"),
    )


def print_table(rows: list[Row]) -> None:
    lines = [TABLE_HEAD] + [table_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(TABLE_HEAD))]
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    for r in rows:
        if r.note:
            print(f"  - {r.name}: {r.note}")


def save(rows: list[Row], started: float) -> Path:
    path = HERE / "results.json"
    path.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine(),
                "seconds": round(time.perf_counter() - started, 1),
                "rows": [asdict(r) for r in rows],
            },
            indent=1,
        )
        + "\n"
    )
    return path


def plot(headline: Row, native_vs_emulated: Row | None) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    labels = ["pip install\nfrom sdists", "pip install\nfrom our index"]
    values = [headline.theirs or 0.0, headline.ours]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bars = ax.bar(labels, values, color=["#c0504d", "#4f81bd"])
    ax.bar_label(bars, labels=[f"{v:.1f} s" for v in values])
    ax.set_ylim(0, max(values) * 1.15)  # room for the labels
    ax.set_ylabel("seconds (arm64, emulated)")
    ratio = f"{headline.ratio:.1f}x faster" if headline.ratio else ""
    ax.set_title(f"Wheel cache effect: {ratio}")
    fig.tight_layout()
    path = HERE / "headline.png"
    fig.savefig(path, dpi=110)
    return path
