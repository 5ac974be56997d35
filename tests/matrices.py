"""Copies of examples/local.yaml for tests and benchmarks, with their own index root."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCAL = REPO / "examples" / "local.yaml"
BASE_BLOCK = (
    "    base:\n      bootstrap: debootstrap\n      suite: bookworm\n"
    "      mirror: http://deb.debian.org/debian\n"
)
ENGINES_BLOCK = "engines:\n  - name: local\n    url: unix:///var/run/docker.sock\n    slots: 2\n"


def local_matrix_copy(
    dest: Path, root: Path, replacements: Mapping[str, str] | None = None
) -> Path:
    """examples/local.yaml written to `dest`, its index root at `root`, plus literal text
    replacements; each must match, so a changed example fails loudly instead of quietly."""
    text = LOCAL.read_text()
    for old, new in {
        "root: .orchestrate/wheelhouse": f"root: {root}",
        **(replacements or {}),
    }.items():
        assert old in text, f"{old!r} is not in {LOCAL}"
        text = text.replace(old, new)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    return dest
