"""Where orchestrate keeps its own state on the host running it."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.core.errors import InputError


def cache_dir() -> Path:
    """`$ORCHESTRATE_CACHE_DIR`, else `$XDG_CACHE_HOME/orchestrate`, else ~/.cache.
    An explicit folder must be one we can make and use: checked here, named if not."""
    explicit = os.environ.get("ORCHESTRATE_CACHE_DIR")
    if not explicit:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "orchestrate"
    path = Path(explicit)
    try:
        if "\0" in explicit:
            raise ValueError("a NUL byte")
        path.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(
            f"ORCHESTRATE_CACHE_DIR={explicit[:200]!r}: cannot use it as a folder ({reason})",
            hint="point it at a folder this user can create and write",
        ) from None
    return path
