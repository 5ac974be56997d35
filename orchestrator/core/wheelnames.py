"""Wheel file names: parsed, checked, classified. Used by the store and by jobs."""

from __future__ import annotations

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from orchestrator.core.errors import UnsafeName


def is_pure(filename: str) -> bool:
    return all(t.platform == "any" for t in parse_wheel_filename(filename)[3])


def safe_wheel_name(name: str) -> str:
    """The name itself if it is a valid wheel filename with no path in it."""
    if "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise UnsafeName(f"refusing wheel file name {name!r}: it contains a path")
    try:
        parse_wheel_filename(name)
    except InvalidWheelFilename as exc:
        raise UnsafeName(f"refusing {name!r}: not a valid wheel file name ({exc})") from None
    return name
