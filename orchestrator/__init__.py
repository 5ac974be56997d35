"""orchestrate: multi-arch builder images and per-platform Python wheel caches."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__version__ = "0.1.0"
DISTRIBUTION = "orchestrate-wheels"  # PyPI's `orchestrate` is another project


def revision() -> str:
    """The commit this copy was built from: `$ORCHESTRATE_REVISION`, else the one a
    wheel build recorded (setup.py), else the checkout's own (an editable install),
    else "unknown"."""
    explicit = os.environ.get("ORCHESTRATE_REVISION")
    if explicit:
        return explicit
    here = Path(__file__).parent
    try:
        return (here / "_revision.txt").read_text().strip() or "unknown"
    except OSError:
        pass
    try:
        done = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def version_line() -> str:
    return f"orchestrate {__version__} ({DISTRIBUTION}, commit {revision()})"
