"""The client matrix, run inside a builder with its own Python (standard library only).

argv[1] is a JSON object: {"python": path, "tool_pip": path, "attempts": [[server,
index URL, hashes], ...], "requirements": [[pin, sha256], ...], "imports": [module,
...], "clients": {name: pip spec or ""}}. Each client gets a fresh venv made by the
distro's own `python -m venv` (so the "" client is the pip the distro ships; the
builder's tool pip installs any other), then makes each attempt: installs the
requirements from that index as --extra-index-url (with --require-hashes when asked)
into a fresh --target, and imports them. One JSON line per attempt on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HOME = tempfile.mkdtemp(prefix="clients-")


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}
    )


def make_client(config: dict[str, Any], name: str, spec: str) -> tuple[list[str], str]:
    """The install command's head for a client, and its version. A client other than
    the distro's own pip gets a venv without pip, and the builder's tool pip installs
    the client into it: under QEMU, ensurepip costs tens of seconds a venv."""
    python, venv = config["python"], f"{HOME}/{name}"
    made = run(python, "-m", "venv", *(["--without-pip"] if spec else []), venv)
    if made.returncode:
        sys.exit(f"venv for {name}: {made.stderr}")
    if spec:
        got = run(config["tool_pip"], "--python", f"{venv}/bin/python", "install", "-q", spec)
        if got.returncode:
            sys.exit(f"installing {spec}: {got.stderr}")
    if name == "uv":
        version = run(f"{venv}/bin/uv", "--version").stdout.split()[1]
        return [f"{venv}/bin/uv", "pip", "install", "--no-cache", "--python", python], version
    version = run(f"{venv}/bin/pip", "--version").stdout.split()[1]
    return [f"{venv}/bin/pip", "install", "--no-cache-dir", "--disable-pip-version-check"], version


def attempt(
    head: list[str], config: dict[str, Any], index: str, *, hashes: bool
) -> tuple[int, str]:
    target = tempfile.mkdtemp(prefix="t-", dir=HOME)
    lines = [f"{pin} --hash=sha256:{sha}" if hashes else pin for pin, sha in config["requirements"]]
    Path(f"{target}.txt").write_text("\n".join(lines) + "\n")
    args = ["--no-deps", "--only-binary", ":all:", "--target", target, "--extra-index-url", index]
    done = run(*head, *args, *(["--require-hashes"] if hashes else []), "-r", f"{target}.txt")
    if done.returncode:
        return done.returncode, done.stdout[-1500:] + done.stderr[-3000:]
    code = "; ".join(f"import {m}" for m in config["imports"])
    imported = run(config["python"], "-c", code, env={"PYTHONPATH": target})
    return imported.returncode, imported.stderr[-2000:]


def client(config: dict[str, Any], name: str, spec: str) -> list[str]:
    """One client's JSON lines: its venv, then each attempt in turn."""
    head, version = make_client(config, name, spec)
    lines = []
    for server, index, hashes in config["attempts"]:
        code, output = attempt(head, config, index, hashes=hashes)
        result = {"client": name, "version": version, "server": server}
        result.update(hashes=hashes, code=code, output=output)
        lines.append(json.dumps(result))
    return lines


def main() -> None:
    """The clients side by side (each has its own venv and targets): under QEMU a
    client's pip is one busy core, and the host has more."""
    config = json.loads(sys.argv[1])
    clients = config["clients"].items()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for lines in pool.map(lambda c: client(config, *c), clients):
            print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
