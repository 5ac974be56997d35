#!/usr/bin/env python3
"""One wheel job inside a builder container, in two phases.

fetch   (with network) /job/src holds the pinned sdist, put there by orchestrate
        after checking its sha256 (or, run by hand, downloaded from
        $ORCHESTRATE_SDIST_URL and checked against $ORCHESTRATE_SDIST_SHA256).
        /job/deps holds the platform's cached build-requirement wheels.
        The sdist is unpacked to /job/build, a build environment is made at
        /job/env and its static build requirements (build-system.requires),
        plus any dynamic ones a build phase asked for (/job/build-needs.txt),
        are installed into it, preferring wheels (never --no-binary); a file
        the cache holds is not downloaded again. /job/build-constraints.txt
        and /job/build-pins.txt (the exact versions an earlier run resolved,
        which then come from the cache without asking the index), when
        present, constrain every step. /job/fetch.json records what was
        installed. The build backend is not run here.
build   (with --network none) ask the backend for its dynamic build
        requirements (get_requires_for_build_wheel); if the environment lacks
        some, list them in /job/out/needs.txt and exit 13 (orchestrate fetches
        them and runs this phase again); else build the wheel from /job/build
        into /job/out, with the build folder mapped out of compiled code so
        that two builds give the same bytes.

Exit codes: 0 ok, 10 the sdist is missing, does not match or does not unpack,
11 build requirements could not be downloaded or installed, 12 the build
backend failed while computing requirements or metadata, 13 dynamic build
requirements are missing (see needs.txt), 20 the build failed.
"""

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

JOB = Path(os.environ.get("ORCHESTRATE_JOB_DIR", "/job"))
SRC, DEPS, OUT, BUILD, ENV = (JOB / n for n in ("src", "deps", "out", "build", "env"))
CONSTRAINTS, PINS, RECORD = JOB / "build-constraints.txt", JOB / "build-pins.txt", JOB / "fetch.json"
NEEDS = JOB / "build-needs.txt"  # dynamic build requirements a build phase asked for
RESOLVED = JOB / "build-resolved.txt"  # versions another sdist resolved: constraints only
PIP = [sys.executable, "-m", "pip"]
SYSTEM_PACKAGES = Path("/etc/orchestrate/job-packages.txt")  # written by the system step
CROSS = Path("/opt/orchestrate/cross")  # the native cross toolchain, in emulated builders
EXIT_SDIST, EXIT_DEPS, EXIT_METADATA, EXIT_NEEDS, EXIT_BUILD = 10, 11, 12, 13, 20


def say(text):
    print(text, flush=True)


def step(argv, code, env=None):
    say("+ " + " ".join(argv))
    if subprocess.run(argv, check=False, env=env).returncode != 0:
        sys.exit(code)


def compiler_env():
    """Build from a fixed folder and map it away in what compilers record: a random
    build folder would otherwise end up inside every extension module."""
    env = dict(os.environ)
    for var in ("CFLAGS", "CXXFLAGS"):
        env[var] = (env.get(var, "") + f" -ffile-prefix-map={BUILD}=.").strip()
    return native_compiler(env)


def native_compiler(env):
    """With ORCHESTRATE_NATIVE_COMPILER=1 (an emulated job on an engine that runs this
    builder's cross toolchain natively), its wrappers go first on PATH: cc, gcc, c++,
    g++, cpp, ld and the target-triplet names that Python's sysconfig CC, CXX and
    LDSHARED use, all with --sysroot=/. It is checked first; on any problem the
    build falls back to the emulated compiler. /job/out/compiler.json says which."""
    if env.get("ORCHESTRATE_NATIVE_COMPILER") != "1":
        return env
    said = check_native_compiler()
    (OUT / "compiler.json").write_text(json.dumps(said))
    if not said["used"]:
        say(f"native compiler not used ({said['reason']}): compiling under emulation")
        return env
    say(f"compiling with the native cross compiler: gcc {said['gcc']} on {said['host']}")
    return {**env, "PATH": f"{CROSS / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"}


def check_native_compiler():
    """The toolchain runs, and is the GCC major.minor the image's probe recorded for the
    builder's own compiler (no emulated gcc is started for this)."""
    try:
        info = json.loads((CROSS / "toolchain.json").read_text())
        probe = json.loads(Path("/etc/orchestrate/probe.json").read_text())
        expected = probe["native_compiler"]["builder_gcc"]
        ran = subprocess.run([str(CROSS / "bin" / "gcc"), "-dumpfullversion"],
                             capture_output=True, text=True, check=False, timeout=60)
    except (OSError, ValueError, KeyError, TypeError, subprocess.SubprocessError) as exc:
        return {"used": False, "reason": f"no usable toolchain: {type(exc).__name__}: {exc}"}
    version = ran.stdout.strip()
    if ran.returncode != 0 or not version:
        return {"used": False, "reason": f"the cross gcc does not run: {ran.stderr.strip()[:200]}"}
    if version.split(".")[:2] != str(expected).split(".")[:2]:
        return {"used": False, "reason": f"cross gcc {version}, builder gcc {expected}"}
    return {"used": True, "gcc": version, "host": info.get("host", "?")}


def unpack(sdist, into):
    into.mkdir(parents=True, exist_ok=True)
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
    roots = [p for p in into.iterdir() if p.is_dir()]
    return roots[0] if len(roots) == 1 else into


def the_sdist():
    found = sorted(SRC.glob("*")) if SRC.is_dir() else []
    if found:
        return found[0]
    url, want = os.environ.get("ORCHESTRATE_SDIST_URL"), os.environ.get("ORCHESTRATE_SDIST_SHA256")
    if not url:
        say("error: no sdist in /job/src and no $ORCHESTRATE_SDIST_URL")
        sys.exit(EXIT_SDIST)
    SRC.mkdir(parents=True, exist_ok=True)
    target = SRC / url.rsplit("/", 1)[-1].split("#", 1)[0]
    say(f"+ download {url}")
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - the recorded URL
        target.write_bytes(response.read())
    got = hashlib.sha256(target.read_bytes()).hexdigest()
    if want and got != want:
        say(f"error: {target.name} has sha256 {got}, expected {want}")
        sys.exit(EXIT_SDIST)
    return target


def pip_args():
    args = ["--prefer-binary", "--find-links", str(DEPS)]
    # The matrix's per-package pip options, e.g. --pre.
    args += json.loads(os.environ.get("ORCHESTRATE_PIP_OPTIONS") or "[]")
    for path in (CONSTRAINTS, PINS, RESOLVED):
        if path.is_file():
            args += ["-c", str(path)]
    return args


def provide(requirements):
    """Install `requirements` into the build environment, wheels preferred (never
    --no-binary). Resolved against the index like pip would, the first time (what
    /job/deps, the platform's cache, already holds is not downloaded again); with
    versions recorded by an earlier run, from the cache alone when it has them."""
    if not requirements:
        return

    def install():
        return [*PIP, "--python", str(ENV / "bin" / "python"), "install", "--no-index",
                *pip_args(), *requirements]

    if PINS.is_file() or RESOLVED.is_file():
        say("+ " + " ".join(install()))
        # A miss is expected (the cache lacks a pinned file) and not the job's error:
        # its output is shown only on success, so a log's first error stays the real one.
        offline = subprocess.run(install(), check=False, capture_output=True, text=True)
        if offline.returncode == 0:
            say(offline.stdout.rstrip())
            return
        say("the recorded versions do not cover these requirements: resolving them")
        for path in (PINS, RESOLVED):  # resolve afresh, as pip would, from the index
            path.unlink(missing_ok=True)
    step([*PIP, "download", "-d", str(DEPS), *pip_args(), *requirements], EXIT_DEPS)
    step(install(), EXIT_DEPS)


def unsatisfied(requirements):
    """The requirements the build environment does not meet yet (no pip run for none)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    have = {canonicalize_name(n): v for n, _, v in (p.partition("==") for p in installed())}
    missing = []
    for text in requirements:
        req = Requirement(text)
        version = have.get(canonicalize_name(req.name))
        if req.marker is not None and not req.marker.evaluate():
            continue
        if version is None or not req.specifier.contains(version, prereleases=True):
            missing.append(text)
    return missing


def installed():
    """name==version of every distribution in the build environment (read, not asked
    of pip: a pip start costs seconds under emulation)."""
    found = []
    for info in sorted(ENV.glob("lib/python*/site-packages/*.dist-info")):
        fields = dict(line.split(": ", 1) for line in (info / "METADATA").read_text(
            errors="replace").split("\n\n", 1)[0].splitlines() if ": " in line)
        found.append(f"{fields.get('Name', info.name)}=={fields.get('Version', '?')}")
    return sorted(found)


def fetch():
    """Network on: the sdist unpacked, a build environment with its static build
    requirements (and any the build phase asked for), and nothing of the backend run:
    the backend's work (cythonizing, compiling) all happens in the build phase."""
    for folder in (DEPS, OUT):
        folder.mkdir(parents=True, exist_ok=True)
    try:
        source = unpack(the_sdist(), BUILD)
    except (OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
        say(f"error: the sdist does not unpack: {exc}")
        sys.exit(EXIT_SDIST)
    from build import ProjectBuilder

    try:
        static = sorted(ProjectBuilder(source).build_system_requires)
    except Exception as exc:  # noqa: BLE001 - any failure here is the project's metadata
        say(f"error: build-system table: {type(exc).__name__}: {exc}")
        sys.exit(EXIT_METADATA)
    say(f"static build requirements: {static}")
    needed = NEEDS.read_text().split("\n") if NEEDS.is_file() else []
    needed = [n for n in needed if n.strip()]
    if needed:
        say(f"dynamic build requirements, from the build phase: {needed}")
    step([sys.executable, "-m", "venv", "--without-pip", str(ENV)], EXIT_DEPS)
    provide(static + needed + recorded_extras(static + needed))
    record = {"static": static, "dynamic": needed, "installed": installed(),
              "source": str(source.relative_to(JOB)), "system_packages": system_packages()}
    RECORD.write_text(json.dumps(record, indent=1))
    say(f"build environment: {' '.join(record['installed'])}")


def system_packages():
    """name=version of the extra system packages installed for this job, if any."""
    try:
        return sorted(l for l in SYSTEM_PACKAGES.read_text().splitlines() if l.strip())
    except OSError:
        return []


def recorded_extras(requirements):
    """With recorded pins, every pinned distribution, so that the dynamic build
    requirements an earlier run found are there without another round trip."""
    if not PINS.is_file():
        return []
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    named = {canonicalize_name(Requirement(r).name) for r in requirements}
    pins = [p for p in PINS.read_text().split("\n") if p.strip()]
    return [p for p in pins if canonicalize_name(p.split("==")[0]) not in named]


def build():
    """Network off: ask the backend for its dynamic build requirements; if the
    environment lacks any, say which (exit 13: orchestrate fetches them and comes
    back); else build the wheel."""
    from build import BuildBackendException, ProjectBuilder

    record = json.loads(RECORD.read_text())
    OUT.mkdir(parents=True, exist_ok=True)
    builder = ProjectBuilder(JOB / record["source"], python_executable=str(ENV / "bin" / "python"),
                             runner=runner(compiler_env()))
    try:
        dynamic = sorted(builder.get_requires_for_build("wheel"))
    except BuildBackendException as exc:
        say(f"error: the build backend failed computing build requirements: {exc}")
        sys.exit(EXIT_METADATA)
    missing = unsatisfied(dynamic)
    if missing:
        say(f"dynamic build requirements missing from the environment: {missing}")
        (OUT / "needs.txt").write_text("\n".join(missing) + "\n")
        sys.exit(EXIT_NEEDS)
    say(f"dynamic build requirements: {dynamic} (all present)")
    try:
        wheel = builder.build("wheel", str(OUT))
    except BuildBackendException as exc:
        say(f"error: the build failed: {exc}")
        sys.exit(EXIT_BUILD)
    say(f"built {Path(wheel).name}")


def runner(env):
    def run(cmd, cwd=None, extra_environ=None):
        say("+ " + " ".join(cmd[:2]) + " (build backend)")
        subprocess.run(cmd, cwd=cwd, env={**env, **(extra_environ or {})}, check=True)
    return run


if __name__ == "__main__":
    if sys.argv[1:] == ["fetch"]:
        fetch()
    elif sys.argv[1:] == ["build"]:
        build()
    else:
        sys.exit(__doc__)
