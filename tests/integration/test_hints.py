"""The packages a hint names are real packages of the builder's release.

A hint that names a transitional or unknown package (bookworm's `libldap2-dev`)
sends the user one more night the wrong way. The builder drops apt's lists to
stay small, so the test fetches them again in a throwaway container of the
bookworm builder and asks apt for each Debian name the hints can give.
"""

from __future__ import annotations

import subprocess

from orchestrator.images.pipeline import ImagesReport
from orchestrator.jobs.failures import PROVIDERS

AMD = "debian-bookworm-amd64"


def test_every_debian_package_a_hint_names_is_a_real_package_of_bookworm(
    built_images: ImagesReport,
) -> None:
    names = sorted({name for deb, _rpm in PROVIDERS.values() for name in deb.split()})
    image = built_images.facts[AMD].ids["local"]
    script = (
        'apt-get update -qq >/dev/null && for p in "$@"; do '
        'found=$(apt-cache show --no-all-versions "$p" 2>/dev/null) || { echo "$p missing"; '
        "continue; }; "
        'echo "$found" | grep -qi "^Description.*transitional" && echo "$p transitional"; '
        "done; true"
    )
    done = subprocess.run(
        ["docker", "run", "--rm", "--user", "root", image, "sh", "-c", script, "sh", *names],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    problems = [
        line for line in done.stdout.splitlines() if line.endswith(("missing", "transitional"))
    ]
    assert problems == [], problems
    assert "libldap-dev" in names
    assert "libldap2-dev" not in names
