"""The demo's wall time from nothing: `scripts/demo` in a fresh clone, with an empty
engine, an empty registry and empty caches.

"Nothing" is a fresh machine whose Debian packages are installed (scripts/setup-host
finds them; a fresh machine adds their `apt-get install`). Everything the demo makes
starts empty and is thrown away after:
- the engine: a second dockerd with its own data root (tests/integration/remote.py);
- the registry: a second docker-registry, its storage in a new folder;
- the caches: `$XDG_CACHE_HOME` in a new folder (pip's, and ours: bases, tool venvs);
- the checkout: `git clone` of this one, its venv made by the demo's set-up.
The clone's examples/local.yaml names that engine and registry, and `DOCKER_HOST`
points `reproduce` at the engine. `python -m benchmarks.demo` runs this row alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import OUT, REPO, Row, print_table, sh
from tests.integration.remote import SOCKET, second_engine, wait_for

TARGET = 240.0  # seconds: a first run in at most 4 minutes
REGISTRY = "127.0.0.1:5055"
# A fresh root shell's: the benchmarks' own venv must not lend the demo its Python.
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STEP = re.compile(r"^== (.+) \((\d+)s\)$", re.MULTILINE)


@contextlib.contextmanager
def _empty_registry(folder: Path) -> Iterator[str]:
    """A docker-registry on REGISTRY storing into `folder`, as scripts/setup-host runs
    its own on 127.0.0.1:5000."""
    config = folder / "registry.yml"
    config.write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {folder / 'storage'}}}}}\n"
        f"http: {{addr: {REGISTRY}}}\n"
    )
    with (folder / "registry.log").open("w") as log:
        server = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for("the empty registry", ["curl", "-sf", "-o", "/dev/null", f"http://{REGISTRY}/v2/"])
        yield REGISTRY
    finally:
        server.terminate()
        server.wait(timeout=30)


def _clone(dest: Path, registry: str) -> None:
    """A fresh clone whose default matrix names the empty engine and registry."""
    sh("git", "clone", "--quiet", str(REPO), str(dest))
    matrix = dest / "examples" / "local.yaml"
    text = matrix.read_text()
    for old, new in (
        ("url: 127.0.0.1:5000", f"url: {registry}"),
        ("url: unix:///var/run/docker.sock", f"url: unix://{SOCKET}"),
    ):
        if old not in text:
            raise RuntimeError(f"{matrix}: no {old!r} to point at the empty one")
        text = text.replace(old, new)
    matrix.write_text(text)


def _steps(output: str, total: float) -> str:
    """`set-up 17 s, doctor 2 s, ...` from the demo's `== step (Ns)` lines."""
    marks = [(name, int(at)) for name, at in STEP.findall(output)]
    ends = [at for _, at in marks[1:]] + [round(total)]
    return ", ".join(
        f"{name} {end - at} s"
        for (name, at), end in zip(marks, ends, strict=True)
        if name != "done"
    )


def from_nothing() -> Row:
    """Seconds of `scripts/demo` from nothing, and where they went."""
    root = OUT / "demo"
    shutil.rmtree(root, ignore_errors=True)
    (root / "registry").mkdir(parents=True)
    engine_root = root / "engine"
    with _empty_registry(root / "registry") as registry, second_engine(root, engine_root):
        _clone(root / "clone", registry)
        # A fresh machine's shell sets none of ours (benchmarks/run sets the cache's).
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATE_")}
        env.update(XDG_CACHE_HOME=str(root / "cache"), DOCKER_HOST=f"unix://{SOCKET}", PATH=PATH)
        started = time.perf_counter()
        done = subprocess.run(
            ["scripts/demo"],
            check=False,
            cwd=root / "clone",
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
    shutil.rmtree(root, ignore_errors=True)
    (OUT / "demo.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/demo exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return Row(
        "the demo from nothing: scripts/demo in a fresh clone, empty engine and caches",
        seconds,
        None,
        "s",
        None,
        f"<= {TARGET:.0f} s",
        seconds <= TARGET,
        f"set-up included (the host's Debian packages installed); {_steps(done.stdout, seconds)}",
    )


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    print_table([from_nothing()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
