"""The smoke test's check, run inside a bare base container by its Python.

Standard library only: the container has the distro's interpreter and the
wheel's runtime packages, nothing else (no pip, no -dev packages, no network).
/smoke/smoke.json names the wheel, its extension modules, its top-level
names and an optional test command. The wheel is unpacked to /smoke/site,
which goes first on sys.path; a wheel with no extension module and no test
command is imported from the zip itself (zipimport: unpacking thousands of
files costs seconds), and checked again unpacked if any import fails there. Every extension module must import; each
top-level name must import unless what is missing is another distribution
(its Python dependencies are not installed here). The verdict goes to
/smoke/result.json and the exit code: 0 passed, 1 failed.

`check.py --inline STARTED` runs in the build container right after the build,
with a smoke.json beside it holding only the test command and its timeout: it
finds the one wheel in /job/out, reads its extension modules
and top-level names from the zip, unpacks it under /tmp (never into /job/out,
which is copied out), and writes /job/out/smoke.json with every shared object
the process loaded and the seconds since STARTED (the shell's clock when the
build ended). Nothing is held back here: orchestrate compares what was loaded
with the wheel's runtime packages once it has read the wheel's ELF, and checks
again in a container of its own whatever this cannot settle.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

SMOKE = Path("/smoke")
UNPACK = "ORCHESTRATE_SMOKE_UNPACK"  # set for the second try of a zipped check
INLINE_OUT, INLINE_SMOKE = Path("/job/out"), Path("/tmp/orchestrate-smoke")
DATA_DIR = re.compile(r"^[^/]+\.data/(?:purelib|platlib)/")


def check(module: str, own: set[str]) -> dict[str, str]:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing and missing not in own:
            return {"module": module, "status": "skipped", "error": f"needs {missing}"}
        return {"module": module, "status": "failed", "error": str(exc)}
    except Exception as exc:  # an ImportError from the loader says which library
        return {"module": module, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    return {"module": module, "status": "ok", "error": ""}


def run_command(command: str, site: str, timeout: float) -> dict[str, object]:
    """The matrix's test command, with `python` on PATH and the wheel importable."""
    bin_dir = SMOKE / "bin"
    bin_dir.mkdir(exist_ok=True)
    link = bin_dir / "python"
    if not link.exists():
        link.symlink_to(sys.executable)
    env = dict(os.environ, PYTHONPATH=site, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    print(f"+ {command}", flush=True)
    try:
        done = subprocess.run(["sh", "-c", command], env=env, cwd=SMOKE, timeout=timeout,
                              check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"command": command, "exit_code": None, "error": f"timed out after {timeout}s"}
    error = "" if done.returncode == 0 else f"exit code {done.returncode}"
    return {"command": command, "exit_code": done.returncode, "error": error}


def foreign(allowed: list[str]) -> list[str]:
    """Shared objects this process loaded from outside /smoke that no allowed
    package provides (/proc/self/maps names each mapped file by its real path)."""
    real = {os.path.realpath(path) for path in allowed}
    loaded = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split(None, 5)
            path = parts[5].strip() if len(parts) == 6 else ""
            name = path.rsplit("/", 1)[-1]
            if path.startswith("/") and ".so" in name and not path.startswith(str(SMOKE)):
                loaded.add(path)
    return sorted(p for p in loaded if p not in real)


def unpack(wheel: str) -> str:
    site = str(SMOKE / "site")
    with zipfile.ZipFile(SMOKE / wheel) as archive:
        archive.extractall(site)
    return site


def inline_config(started: str) -> dict[str, object]:
    """The config the host would write, read from the one wheel in /job/out."""
    global SMOKE
    SMOKE = INLINE_SMOKE
    (INLINE_OUT / "smoke.json").unlink(missing_ok=True)  # only this check writes it
    SMOKE.mkdir(parents=True, exist_ok=True)
    (wheel,) = INLINE_OUT.glob("*.whl")
    link = SMOKE / wheel.name
    if not link.exists():
        link.symlink_to(wheel)
    with zipfile.ZipFile(wheel) as archive:
        names = [DATA_DIR.sub("", n) for n in archive.namelist() if not n.endswith("/")]
    given = Path(__file__).with_name("smoke.json")  # the test command, if any
    config = json.loads(given.read_text()) if given.is_file() else {}
    return {"command": None, "timeout": 600, **config, "wheel": wheel.name,
            "extensions": sorted(filter(None, map(extension, names))),
            "top_level": sorted(filter(None, map(top_name, names))),
            "started": float(started), "result": str(INLINE_OUT / "smoke.json")}


def extension(path: str) -> str | None:
    """`pkg/_ext.cpython-311-x86_64-linux-gnu.so` -> `pkg._ext`."""
    if not path.endswith(".so"):
        return None
    *folders, filename = path.split("/")
    parts = [*folders, filename.split(".", 1)[0]]
    return ".".join(parts) if all(p.isidentifier() for p in parts) else None


def top_name(path: str) -> str | None:
    first, _, rest = path.partition("/")
    if first.endswith((".dist-info", ".data")):
        return None
    candidate = first if rest else first[:-3] if first.endswith(".py") else None
    if not rest and first.endswith(".so"):
        candidate = first.split(".", 1)[0]
    return candidate if candidate and candidate.isidentifier() and candidate != "__pycache__" \
        else None


def loaded() -> list[str]:
    """Every shared object this process mapped from outside SMOKE."""
    return foreign([])


def main() -> int:
    inline = sys.argv[1:2] == ["--inline"]
    config = inline_config(sys.argv[2]) if inline else json.loads((SMOKE / "smoke.json").read_text())
    zipped = not config["extensions"] and not config.get("command") and UNPACK not in os.environ
    site = str(SMOKE / config["wheel"]) if zipped else unpack(config["wheel"])
    sys.path.insert(0, site)
    own = set(config["top_level"]) | {m.split(".")[0] for m in config["extensions"]}
    # An extension at the top (python-ldap's `_ldap`) is both: checked once.
    modules = dict.fromkeys([*config["extensions"], *config["top_level"]])
    checks = [check(m, own) for m in modules]
    if zipped and any(c["status"] == "failed" for c in checks):
        print("an import failed from the zip: checking again unpacked", flush=True)
        again = [sys.executable, *(["-S"] if sys.flags.no_site else []), *sys.argv]
        os.execve(sys.executable, again, {**os.environ, UNPACK: "1"})
    for c in checks:
        print(f"{c['status']:8} {c['module']} {c['error']}".rstrip(), flush=True)
    result: dict[str, object] = {"checks": checks}
    failed = [c for c in checks if c["status"] == "failed"]
    if inline:
        result["loaded"] = loaded()
    if config.get("allowed_libraries") is not None:
        result["foreign"] = outside = foreign(config["allowed_libraries"])
        for path in outside:
            print(f"foreign  {path}", flush=True)
        failed += [{"module": "-", "error": f"loaded {p}"} for p in outside]
    if config.get("command") and not failed:
        result["command"] = run_command(config["command"], site, float(config["timeout"]))
    said = result.get("command")
    passed = not failed and not (isinstance(said, dict) and said["error"])
    result["passed"] = passed
    if inline:
        result["seconds"] = round(time.time() - float(config["started"]), 2)
    Path(str(config.get("result", SMOKE / "result.json"))).write_text(json.dumps(result))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
