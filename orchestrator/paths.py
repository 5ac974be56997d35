"""Where orchestrate keeps its own state on the host running it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$ORCHESTRATE_CACHE_DIR`, else `$XDG_CACHE_HOME/orchestrate`, else ~/.cache."""
    explicit = os.environ.get("ORCHESTRATE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orchestrate"
