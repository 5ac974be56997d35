"""Base images: pulled for the right platform, or bootstrapped with debootstrap.

A bootstrapped base is built `FROM scratch` + `ADD rootfs.tar` with the
build's platform set, because `docker import --platform` on Engine 20.10
records the host's arch instead. The rootfs tarball is cached on the host by
suite, arch and mirror, and the image by its tag on each engine, so neither
is made again on every run.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from orchestrator.config import Bootstrap
from orchestrator.config.matrix import Platform
from orchestrator.core.errors import EnvironmentProblem, RegistryError
from orchestrator.core.files import host_lock
from orchestrator.core.process import Command, run, url_secrets
from orchestrator.engines import Engine, ImageBuildRequest
from orchestrator.images.render import base_reference, bootstrap_sources, scratch_context


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
            return engine.build(
                ImageBuildRequest(tag=ref, context=context, platform=platform.arch), on_line
            )
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


def bootstrap_rootfs(spec: Bootstrap, arch: str, log: Path, *, bases: Path) -> Path:
    """debootstrap into a temporary folder and pack it; cached by suite, arch, mirror."""
    target = rootfs_path(spec, arch, bases)
    with host_lock(f"rootfs|{target}"):
        if target.is_file():
            return target
        if shutil.which("debootstrap") is None:
            raise EnvironmentProblem(
                "debootstrap is not installed", hint="sudo apt-get install debootstrap"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="orchestrate-rootfs-", dir=target.parent) as tmp:
            root = Path(tmp) / "rootfs"
            done = run(
                Command(
                    (
                        "debootstrap",
                        f"--variant={spec.variant}",
                        f"--arch={arch}",
                        spec.suite,
                        str(root),
                        spec.mirror,
                    ),
                    timeout=3600,
                    secrets=url_secrets(spec.mirror),
                ),
                log,
            )
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


def _scratch_context(rootfs: Path, sources: str) -> bytes:
    """The root file system with its apt sources: written here, not in the cached
    rootfs, so a change of pockets makes a new base without a new debootstrap."""
    files = {"sources.list": sources.encode()}
    steps = "COPY sources.list /etc/apt/sources.list\n"
    return scratch_context(rootfs.read_bytes(), files, steps)
