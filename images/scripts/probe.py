#!/usr/bin/env python3
"""Print this image's real interpreter tags and glibc version as JSON.

Run by the image build itself (saved to /etc/orchestrate/probe.json) and
read back by orchestrate, so plans use the tags pip in this image accepts.
Usage: orchestrate-probe PYTHON_VERSION...
       orchestrate-probe --write FOLDER PYTHON_VERSION...  (probe.json and runtime.json)

With --runtime, print instead what wheels built here link against: each
Python's full version, every installed package with its version, and, for
each shared library the dynamic loader's cache knows, its path and the package
that owns it (saved to /etc/orchestrate/runtime.json, by the builder and by
each job's system-package step). Orchestrate resolves a wheel's DT_NEEDED
entries with it, on the host, without running anything per wheel.
"""

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

SNIPPET = ("import json, platform; from packaging.tags import sys_tags; "
           "print(json.dumps({'tags': [str(t) for t in sys_tags()], "
           "'version': platform.python_version()}))")


def main() -> None:
    if sys.argv[1:2] == ["--runtime"]:
        print(json.dumps(runtime(_full_versions(sys.argv[2:])), indent=0, sort_keys=True))
        return
    if sys.argv[1:2] == ["--write"]:
        write(Path(sys.argv[2]), sys.argv[3:])
        return
    print(json.dumps(probe(_asked(sys.argv[1:])), indent=1))


def write(folder, versions):
    """Both files in one run: each Python is asked once (under emulation, an
    interpreter's start is most of a probe's time)."""
    asked = _asked(versions)
    (folder / "probe.json").write_text(json.dumps(probe(asked), indent=1) + "\n")
    facts = runtime({version: answer["version"] for version, answer in asked.items()})
    (folder / "runtime.json").write_text(json.dumps(facts, indent=0, sort_keys=True) + "\n")


def _asked(versions):
    """Each Python's tags and full version, from the Python itself."""
    return {version: json.loads(_in_python(version, SNIPPET)) for version in versions}


def _in_python(version, code):
    """What `code` prints, run by the tool venv's Python `version`."""
    python = f"/opt/orchestrate/py{version}/bin/python"
    return subprocess.run([python, "-c", code], check=True, capture_output=True,
                          text=True).stdout


def probe(asked):
    libc, glibc = platform.libc_ver()
    tags = {version: answer["tags"] for version, answer in asked.items()}
    found = {"machine": os.uname().machine, "libc": libc, "glibc": glibc, "tags": tags}
    compiler = native_compiler(Path("/opt/orchestrate/cross"))
    if compiler is not None:
        found["native_compiler"] = compiler
    return found


def _version(argv):
    done = subprocess.run([*argv, "-dumpfullversion"], capture_output=True, text=True,
                          check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def native_compiler(cross):
    """The native cross toolchain, if this builder has one: its version, the
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


def _full_versions(versions):
    """Each Python's full version, asked alone (a job's runtime step: no tags)."""
    code = "import platform;print(platform.python_version())"
    return {version: _in_python(version, code).strip() for version in versions}


def runtime(pythons):
    """The runtime facts, `pythons` mapping each version to its full version."""
    deb = Path("/usr/bin/dpkg-query").exists()
    libraries = _ld_cache()
    owners = _owners_deb(libraries.values()) if deb else _owners_rpm(libraries.values())
    return {"family": "deb" if deb else "rpm", "python": pythons,
            "packages": _installed_deb() if deb else _installed_rpm(),
            "libraries": {soname: {"path": path, "package": owners.get(path, "")}
                          for soname, path in libraries.items()}}


def _ld_cache():
    """soname -> path, from `ldconfig -p` (the first entry: the one the loader uses)."""
    out = subprocess.run(["ldconfig", "-p"], check=True, capture_output=True, text=True)
    found = {}
    for line in out.stdout.splitlines()[1:]:
        name, _, path = line.strip().partition(" => ")
        if not path:
            continue  # the "Cache generated by" line
        found.setdefault(name.split(" (")[0], path.strip())
    return found


def _variants(path):
    """The path, its merged-/usr twin (dpkg may know either) and where it points."""
    twin = path[4:] if path.startswith("/usr/") else "/usr" + path
    return [path, twin, os.path.realpath(path)]


def _owners_deb(paths):
    asked = {}  # a variant -> the cache paths it stands for (symlinks share targets)
    for path in paths:
        for variant in _variants(path):
            asked.setdefault(variant, []).append(path)
    out = subprocess.run(["dpkg-query", "-S", *asked], capture_output=True, text=True,
                         check=False)
    owners = {}
    for line in out.stdout.splitlines():
        packages, _, path = line.partition(": ")
        if path in asked and "," not in packages and " " not in packages:
            for original in asked[path]:
                owners.setdefault(original, packages.split(":")[0])  # libpq5:amd64
    return owners


def _owners_rpm(paths):
    owners = {}
    for path in paths:
        out = subprocess.run(["rpm", "-qf", "--qf", "%{NAME}\n", path], capture_output=True,
                             text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            owners[path] = out.stdout.split()[0]
    return owners


def _installed_deb():
    out = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\n"],
                         check=True, capture_output=True, text=True)
    rows = (line.split("\t") for line in out.stdout.splitlines())
    return {name: version for status, name, version in rows if status.startswith("ii")}


def _installed_rpm():
    out = subprocess.run(["rpm", "-qa", "--qf", "%{NAME}\t%{VERSION}-%{RELEASE}\n"],
                         check=True, capture_output=True, text=True)
    return dict(line.split("\t", 1) for line in out.stdout.splitlines() if "\t" in line)


if __name__ == "__main__":
    main()
