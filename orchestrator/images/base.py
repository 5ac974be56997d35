"""Base images: pulled for the right platform, or bootstrapped with debootstrap.

A bootstrapped base is built `FROM scratch` + `ADD rootfs.tar` with the
build's platform set, because `docker import --platform` on Engine 20.10
records the host's arch instead. The rootfs tarball is cached on the host by
suite, arch and mirror, and the image by its tag on each engine, so neither
is made again on every run.

For an arch the host does not run, debootstrap's second stage (installing every
required package into the unpacked tree) would run wholly under QEMU, dpkg
included. Its first stage runs as usual, and its second with the host's dpkg
(`images/scripts/debootstrap-chroot.sh`): only maintainer scripts and triggers
run under QEMU. The files are those of debootstrap's own second stage, logs and
ldconfig's aux-cache aside (tests/integration/test_bases.py); the arm64 base of
bookworm takes 49 s instead of 68 s.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

from orchestrator.config import Bootstrap
from orchestrator.config.matrix import Platform
from orchestrator.core.errors import EnvironmentProblem, RegistryError
from orchestrator.core.files import host_lock
from orchestrator.core.process import Command, Completed, run, url_secrets
from orchestrator.engines import Engine, ImageBuildRequest
from orchestrator.images.render import (
    base_reference,
    bootstrap_sources,
    scratch_context,
    templates_dir,
)

BASE_CONTENT = "org.orchestrate.base-content"  # a bootstrapped base's context, hashed


def base_identity(engine: Engine, image_id: str) -> str:
    """What a base is, for the keys of the parts made in it (cross toolchains, tool
    venvs): a bootstrapped base's content, the same on every engine that built it
    from this host's root file system (Docker and Podman share the parts), else the
    engine's image ID."""
    found = engine.image(image_id)
    content = found.labels.get(BASE_CONTENT) if found else None
    return f"content:{content}" if content else image_id


def ensure_base(
    platform: Platform, engine: Engine, log: Path, on_line: Callable[[str], None], *, bases: Path
) -> str:
    """The base image's ID on `engine`, pulling or bootstrapping it when missing (a
    bootstrapped root filesystem is kept under `bases`, the run layout's)."""
    ref = base_reference(platform)
    with host_lock(f"base|{engine.url}|{ref}"):
        found = engine.image(ref)
        if found is not None and found.arch == platform.arch.value:
            return found.id
        if isinstance(platform.base, Bootstrap):
            rootfs = bootstrap_rootfs(platform.base, platform.arch.debian, log, bases=bases)
            context = _scratch_context(rootfs, bootstrap_sources(platform.base))
            labels = {BASE_CONTENT: hashlib.sha256(context).hexdigest()}
            request = ImageBuildRequest(
                tag=ref, context=context, platform=platform.arch, labels=labels
            )
            return engine.build(request, on_line)
        try:
            engine.pull(ref, platform.arch, on_line)
        except RegistryError as exc:
            raise RegistryError(
                f"cannot pull base image {ref} for {platform.arch.oci_platform}: {exc.message}",
                hint="on a host that cannot pull, bootstrap a Debian-family base instead: "
                "base: {bootstrap: debootstrap, suite: bookworm, mirror: http://deb.debian.org/"
                "debian}",
            ) from None
        pulled = engine.image(ref)
        if pulled is None:
            raise RegistryError(f"pulled {ref} but the engine does not show it")
        return pulled.id


def rootfs_path(spec: Bootstrap, arch: str, bases: Path) -> Path:
    key = hashlib.sha256(f"{spec.suite}|{arch}|{spec.mirror}|{spec.variant}".encode()).hexdigest()
    return bases / f"{spec.suite}-{arch}-{key[:12]}.tar"


def bootstrap_rootfs(
    spec: Bootstrap, arch: str, log: Path, *, bases: Path, native_dpkg: bool = True
) -> Path:
    """debootstrap into a temporary folder and pack it; cached by suite, arch, mirror.
    A foreign arch's second stage runs the host's dpkg unless `native_dpkg` is off."""
    target = rootfs_path(spec, arch, bases)
    with host_lock(f"rootfs|{target.resolve()}"):  # the same file through any link
        if target.is_file():
            return target
        if shutil.which("debootstrap") is None:
            raise EnvironmentProblem(
                "debootstrap is not installed", hint="sudo apt-get install debootstrap"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="orchestrate-rootfs-", dir=target.parent) as tmp:
            root = Path(tmp) / "rootfs"
            done = _debootstrap(spec, arch, root, log, native_dpkg=native_dpkg)
            if not done.ok:
                raise EnvironmentProblem(
                    f"debootstrap of {spec.suite} for {arch} failed (exit {done.returncode}); "
                    f"log: {log}\n{done.tail}",
                    hint="a foreign arch needs QEMU user emulation: sudo orchestrate setup-host",
                )
            for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
                shutil.rmtree(root / cache, ignore_errors=True)
                (root / cache).mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial")
            packed = run(
                Command(("tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), ".")), log
            )
            if not packed.ok:
                raise EnvironmentProblem(f"packing the {arch} rootfs failed; log: {log}")
            partial.replace(target)
    return target


def _debootstrap(
    spec: Bootstrap, arch: str, root: Path, log: Path, *, native_dpkg: bool
) -> Completed:
    """debootstrap into `root`. For an arch the host does not run, the first stage
    (download and extract) and then the second with the host's dpkg; if that fails,
    debootstrap again with its second stage wholly under QEMU."""
    argv = ("debootstrap", f"--variant={spec.variant}", f"--arch={arch}")
    where = (spec.suite, str(root), spec.mirror)

    def fetching(*options: str) -> Command:
        return Command(
            (*argv, *options, *where),
            timeout=3600,
            secrets=url_secrets(spec.mirror),
            env=fetch_env(),
        )

    if native_dpkg and _host_dpkg_arch() not in (None, arch):
        first = run(fetching("--foreign"), log)
        second = _second_stage(root, log) if first.ok else first
        if second.ok:
            return second
        _log_line(log, "the second stage with the host's dpkg failed: again under emulation")
        shutil.rmtree(root, ignore_errors=True)
    return run(fetching(), log)


# glibc's resolver options for a process that looks a name up many times: a query
# the resolver drops is asked again after 1 s rather than glibc's default 5 (with
# more attempts, so that a slow resolver still answers in time).
FETCH_RES_OPTIONS = "timeout:1 attempts:5"


def fetch_env() -> dict[str, str]:
    """debootstrap's environment. It fetches each of a base's ~90 packages with a wget
    of its own, which looks the mirror's name up again: on a host whose resolver
    drops a few queries in a hundred, the default timeout added 5 s a few times to
    every base (the arm64 first stage: 19 s, 14 s with these options). A
    RES_OPTIONS of the user's own is kept."""
    return {**os.environ, "RES_OPTIONS": os.environ.get("RES_OPTIONS", FETCH_RES_OPTIONS)}


# In a mount namespace of its own: debootstrap's chroot is the one of
# images/scripts/debootstrap-chroot.sh, which runs dpkg natively.
_SECOND_STAGE = (
    'mount --bind "$1" /usr/sbin/chroot && '
    'exec "$2/debootstrap/debootstrap" --second-stage --second-stage-target "$2"'
)


def _second_stage(root: Path, log: Path) -> Completed:
    with tempfile.TemporaryDirectory(prefix="orchestrate-chroot-") as tmp:
        real, shim = Path(tmp) / "chroot", Path(tmp) / "debootstrap-chroot.sh"
        shutil.copy2("/usr/sbin/chroot", real)
        shutil.copyfile(templates_dir() / "scripts" / shim.name, shim)
        shim.chmod(0o755)
        env = {
            **os.environ,
            "ORCHESTRATE_CHROOT": str(real),
            "DEBOOTSTRAP_DIR": str(root / "debootstrap"),
        }
        argv = ("unshare", "--mount", "--propagation", "private", "sh", "-c", _SECOND_STAGE)
        return run(Command((*argv, "sh", str(shim), str(root)), env=env, timeout=3600), log)


@cache
def _host_dpkg_arch() -> str | None:
    """The arch of the host's dpkg, or None where there is none or where its
    configuration leaves files out (a minimized host's path-exclude): its dpkg would
    leave them out of the base too."""
    try:
        done = subprocess.run(
            ("dpkg", "--print-architecture"), capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    arch = done.stdout.strip()
    if done.returncode != 0 or not arch:
        return None
    config = Path("/etc/dpkg")
    for path in (config / "dpkg.cfg", *sorted(config.glob("dpkg.cfg.d/*"))):
        lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
        if any(line.strip().startswith("path-") for line in lines):
            return None
    return arch


def _log_line(log: Path, text: str) -> None:
    with log.open("a") as out:
        out.write(f"{text}\n")


def _scratch_context(rootfs: Path, sources: str) -> bytes:
    """The root file system with its apt sources: written here, not in the cached
    rootfs, so a change of pockets makes a new base without a new debootstrap."""
    files = {"sources.list": sources.encode()}
    steps = "COPY sources.list /etc/apt/sources.list\n"
    return scratch_context(rootfs.read_bytes(), files, steps)
