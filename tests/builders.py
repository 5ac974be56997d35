"""A builder as it was before a stable or security update, for tests and benchmarks.

Debian's archive cannot be turned back a day, so the day before an update is made
from today's builder: one package, whose pockets hold an older version, installed
at that version (the one a point release or a security update since replaced),
with the image's creation date moved back a month. Nothing else changes, so a
refresh must bring back exactly that package.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from orchestrator.images.facts import PackageChange

# Tries each installed package until one has another version in the pockets whose
# installation changes that package alone (no dependency follows it down).
DOWNGRADE = r"""
set -eu
apt-get update -qq
for pkg in tzdata $(dpkg-query -W -f '${Package}\n'); do
  now=$(dpkg-query -W -f '${Version}' "$pkg")
  old=$(apt-cache madison "$pkg" | awk -F'|' -v now="$now" \
        '{gsub(/ /, "", $2)} $2 != now {print $2; exit}')
  [ -n "$old" ] || continue
  if [ "$(apt-get -s install --allow-downgrades "$pkg=$old" | grep -c '^Inst')" = 1 ]; then
    apt-get install -y -qq --allow-downgrades "$pkg=$old" > /dev/null
    apt-get clean
    rm -rf /var/lib/apt/lists/*
    echo "DOWNGRADED $pkg $old $now"
    exit 0
  fi
done
echo "no installed package has another version to go back to" >&2
exit 1
"""


def in_builder(
    image: str, arch: str, script: str, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`sh -c script` in a throwaway container of the builder, on its own arch (under
    QEMU when foreign), with `extra` options for `docker run`; not checked."""
    return subprocess.run(
        ["docker", "run", "--rm", "--platform", f"linux/{arch}", *extra, image, "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
    )


def package_versions(tag: str) -> str:
    """`dpkg-query -W` of the image, sorted: what must be equal across two ways."""
    command = (
        "docker",
        "run",
        "--rm",
        tag,
        "dpkg-query",
        "-W",
        "-f",
        "${binary:Package} ${Version}\\n",
    )
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return "".join(sorted(out.splitlines(keepends=True)))


# What installing packages leaves outside dpkg's database: the shell, the loader's
# cache, ca-certificates' choices, the diversions.
SYSTEM_STATE = (
    "readlink /bin/sh; dpkg-divert --list | sort; "
    "md5sum /etc/ld.so.cache /etc/ca-certificates.conf /etc/ssl/certs/ca-certificates.crt; "
    # The engine's own shell, tools and Python lent while packages install are gone: each
    # file of their packages is the package's, and no folder of the engine's arch.
    "dpkg --verify dash grep sed coreutils $(dpkg-query -W -f '${Package} ' 'python3.*-minimal'); "
    "ls -d /lib64 /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu 2>&1; true"
)


def system_state(tag: str) -> str:
    """The image's SYSTEM_STATE: what must be equal across two ways besides packages."""
    command = ("docker", "run", "--rm", "--user", "root", tag, "sh", "-c", SYSTEM_STATE)
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def go_back_one_update(tag: str, *, user: str = "builder") -> PackageChange:
    """Replace `tag` by itself the day before an update: one package one version older
    and created a month ago. The change a refresh must then make is returned."""
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        (context / "downgrade.sh").write_text(DOWNGRADE)
        (context / "Dockerfile").write_text(
            f"FROM {tag}\nUSER root\nCOPY downgrade.sh /tmp/\n"
            "RUN sh /tmp/downgrade.sh && rm /tmp/downgrade.sh\n"
            f"USER {user}\nLABEL org.opencontainers.image.created=2026-01-01T00:00:00+00:00\n"
        )
        done = subprocess.run(
            ("docker", "build", "--no-cache", "-t", tag, str(context)),
            capture_output=True,
            text=True,
            check=True,
        )
    output = (done.stdout + done.stderr).splitlines()  # stderr's colour codes may lead
    line = next(w for w in output if "DOWNGRADED " in w)
    _, package, old, new = line[line.index("DOWNGRADED ") :].split()
    return PackageChange(package=package, old=old, new=new)
