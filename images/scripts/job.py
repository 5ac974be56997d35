#!/usr/bin/env python3
"""One wheel job inside a builder container, in two phases.

fetch NAME==VERSION   (with network) download the pinned sdist to /job/src and
                      everything needed to build it to /job/deps: the static
                      build requirements and the ones the backend asks for
                      (get_requires_for_build_wheel), so phase 2 needs no network.
build                 (with --network none) unpack the sdist to /job/build and build
                      the wheel with --no-index --find-links /job/deps into /job/out,
                      with the build folder mapped out of compiled code so that two
                      builds of the same sdist give the same bytes.

Exit codes: 0 ok, 10 the sdist could not be downloaded, 11 build requirements
could not be downloaded, 20 the build failed.
"""

import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

JOB = Path(os.environ.get("ORCHESTRATE_JOB_DIR", "/job"))
SRC, DEPS, OUT, BUILD = JOB / "src", JOB / "deps", JOB / "out", JOB / "build"
PIP = [sys.executable, "-m", "pip"]


def step(argv, code, env=None):
    print("+ " + " ".join(argv), flush=True)
    if subprocess.run(argv, check=False, env=env).returncode != 0:
        sys.exit(code)


def unpack(sdist, into):
    if sdist.name.endswith(".zip"):
        with zipfile.ZipFile(sdist) as archive:
            archive.extractall(into)
    else:
        with tarfile.open(sdist) as archive:
            if hasattr(tarfile, "data_filter"):
                archive.extractall(into, filter="data")
            else:  # Python < 3.11.4 (Debian 12 has 3.11.2): refuse unsafe members by hand
                for member in archive.getmembers():
                    path = Path(member.name)
                    if path.is_absolute() or ".." in path.parts or member.issym() \
                            or member.islnk():
                        sys.exit(f"refusing unsafe member {member.name!r} in {sdist.name}")
                archive.extractall(into)
    roots = [p for p in Path(into).iterdir() if p.is_dir()]
    return roots[0] if len(roots) == 1 else Path(into)


def fetch(requirement):
    for folder in (SRC, DEPS, OUT):
        folder.mkdir(parents=True, exist_ok=True)
    step([*PIP, "download", "--no-deps", "--no-binary", ":all:", "-d", str(SRC), requirement],
         10)
    sdist = next(SRC.iterdir())
    from build import ProjectBuilder
    from build.env import DefaultIsolatedEnv

    with tempfile.TemporaryDirectory() as tmp:
        source = unpack(sdist, tmp)
        static = sorted(ProjectBuilder(source).build_system_requires)
        print(f"static build requirements: {static}", flush=True)
        step([*PIP, "download", "-d", str(DEPS), *static], 11)
        with DefaultIsolatedEnv() as env:
            env.install(static)
            builder = ProjectBuilder.from_isolated_env(env, source)
            dynamic = sorted(builder.get_requires_for_build("wheel"))
    print(f"dynamic build requirements: {dynamic}", flush=True)
    if dynamic:
        step([*PIP, "download", "-d", str(DEPS), *dynamic], 11)


def build():
    OUT.mkdir(parents=True, exist_ok=True)
    BUILD.mkdir(parents=True, exist_ok=True)
    # Build from a fixed folder, and map it away in what compilers record:
    # pip's own random build folder would otherwise end up inside every
    # extension module, and no two builds would give the same bytes.
    source = unpack(next(SRC.iterdir()), BUILD)
    env = dict(os.environ)
    for var in ("CFLAGS", "CXXFLAGS"):
        env[var] = (env.get(var, "") + f" -ffile-prefix-map={BUILD}=.").strip()
    step([*PIP, "wheel", "--no-deps", "--no-index", "--find-links", str(DEPS),
          "--wheel-dir", str(OUT), str(source)], 20, env)


if __name__ == "__main__":
    if sys.argv[1:2] == ["fetch"] and len(sys.argv) == 3:
        fetch(sys.argv[2])
    elif sys.argv[1:] == ["build"]:
        build()
    else:
        sys.exit(__doc__)
