#!/usr/bin/env python3
"""Print this image's real interpreter tags and glibc version as JSON.

Run by the image build itself (saved to /etc/orchestrate/probe.json) and
read back by orchestrate, so plans use the tags pip in this image accepts.
Usage: orchestrate-probe PYTHON_VERSION...
"""

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

SNIPPET = "import json;from packaging.tags import sys_tags;print(json.dumps([str(t) for t in sys_tags()]))"


def main() -> None:
    tags = {}
    for version in sys.argv[1:]:
        python = f"/opt/orchestrate/py{version}/bin/python"
        out = subprocess.run([python, "-c", SNIPPET], check=True, capture_output=True, text=True)
        tags[version] = json.loads(out.stdout)
    libc, glibc = platform.libc_ver()
    probe = {"machine": os.uname().machine, "libc": libc, "glibc": glibc, "tags": tags}
    compiler = native_compiler(Path("/opt/orchestrate/cross"))
    if compiler is not None:
        probe["native_compiler"] = compiler
    print(json.dumps(probe, indent=1))


def _version(argv):
    done = subprocess.run([*argv, "-dumpfullversion"], capture_output=True, text=True,
                          check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def native_compiler(cross):
    """The native cross toolchain (#17), if this builder has one: its version, the
    builder's own gcc version, and whether it compiles and links C and C++ here."""
    if not (cross / "toolchain.json").is_file():
        return None
    info = json.loads((cross / "toolchain.json").read_text())
    found = {"host": info.get("host", ""), "gcc": _version([str(cross / "bin" / "gcc")]),
             "builder_gcc": _version(["gcc"]), "usable": False, "reason": ""}
    if not found["gcc"]:
        found["reason"] = "the cross gcc does not run here"
    elif found["gcc"].split(".")[:2] != found["builder_gcc"].split(".")[:2]:
        found["reason"] = f"cross gcc {found['gcc']}, builder gcc {found['builder_gcc']}"
    else:
        found["reason"] = _compiles(cross / "bin")
        found["usable"] = not found["reason"]
    return found


def _compiles(bin_dir):
    """'' when the wrappers compile and link a C and a C++ shared object; else why not."""
    with tempfile.TemporaryDirectory() as tmp:
        for driver, ext, code in (("gcc", "c", "int f(void) { return 1; }\n"),
                                  ("g++", "cpp", "#include <string>\n"
                                   "std::string g() { return std::string(\"x\"); }\n")):
            source = Path(tmp) / f"t.{ext}"
            source.write_text(code)
            done = subprocess.run([str(bin_dir / driver), "-shared", "-fPIC", "-o",
                                   str(Path(tmp) / f"t-{ext}.so"), str(source)],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                return f"{driver} cannot build a test object: {done.stderr.strip()[:300]}"
    return ""


if __name__ == "__main__":
    main()
