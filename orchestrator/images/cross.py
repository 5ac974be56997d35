"""Native cross toolchains for builders that run under emulation.

Most of an emulated wheel build is the C/C++ compiler, and the compiler need
not be emulated: a compiler built for the engine's arch that targets the
platform's arch runs natively inside the emulated container (the kernel runs
an engine-arch program directly, whatever the container's rootfs is).

For a Debian-family builder made on an engine of another arch, the distro's
default cross gcc/g++ is installed in a container of the *engine's* arch, from
the same release's base (`images/scripts/cross-toolchain.sh`), gathered into a
relocatable prefix, and added to the builder's context as an archive. The
builder unpacks it under /opt/orchestrate/cross, in a layer of its own; jobs
put its wrappers first on PATH only when they run emulated on an engine of the
toolchain's arch. The archive is cached per (platform, engine arch, engine-arch
base image, script), so it is made once. The builder's inputs name it by that key,
not by its bytes: a builder's freshness is known before the archive is made, and
a fresh builder (a new runner on a shared engine) never makes it.

The same native container of the release makes the builder's tool venvs
(`images/scripts/tool-venvs.sh`): pure-Python wheels in venvs that only link to
/usr/bin/pythonX.Y, so the same folder on every arch; under QEMU, ensurepip and
pip cost about 25 s a builder. They are named by their key too.

Foreign roots: the packages of a builder made under emulation, installed
natively. Under QEMU, `apt-get install` is most of an emulated builder's cost: 113 s of a
bookworm arm64 builder's 121 s on a 2-core amd64 host, where its native twin
takes 31 s in all. Most of that is apt and dpkg themselves (reading indexes,
decompressing and unpacking about 90 MB of packages), not the packages'
maintainer scripts. So the builder's root file system is made in a container of
the *engine's* arch from the same release (`images/scripts/foreign-root.sh`):
the engine's own apt resolves and downloads for the builder's arch, its own dpkg
unpacks into the builder's base (`--root`, on a RAM file system), and chroots
into it for each maintainer script and trigger, which alone run under QEMU. The
engine keeps that root as an image of its own, `orchestrate-root:<platform>-<inputs>`,
and the builder starts FROM it. The engine loads the root's tar as a one-layer image
(`engines/archive.py`): an image build FROM scratch that ADDs it would send it as
a context and copy it once more, about 6 s for the arm64 root.

The root is made only when the builder is built (the freshness check reads the
recipe under `foreign-root/` in the context), and kept by the engine under a tag
named after its inputs (recipe, tool venvs, extra CAs), labelled with the bases
it was made from: two matrices with the same packages share it, and a run in a
cache folder of its own does not make it again. A build that must not reuse
layers (`--force`, a refresh by age) makes it again: today's packages, not the
root made before.

Red Hat-family releases ship no cross compiler for user space (Fedora's
gcc-<arch>-linux-gnu packages are for kernels only, with no target libc), so
their builders fall back to the emulated compiler, and say so.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from orchestrator.config import Bootstrap, Matrix
from orchestrator.config.matrix import Platform
from orchestrator.core.errors import OrchestrateError
from orchestrator.core.files import archived_file, host_lock, write_atomic
from orchestrator.core.layout import RunLayout
from orchestrator.engines import Engine, ImageLoadRequest, RunRequest
from orchestrator.images.base import base_identity, ensure_base
from orchestrator.images.render import (
    FOREIGN_ROOT_SCRIPT,
    TOOLS,
    CrossToolchain,
    ForeignRoot,
    Rendered,
    ToolVenvs,
    deterministic_tar,
    foreign_root_inputs,
    settings_files,
    templates_dir,
)
from orchestrator.model import Arch, Family

PREFIX = "/opt/orchestrate/cross"
SCRIPT = "cross-toolchain.sh"
VENVS_SCRIPT = "tool-venvs.sh"
WITHOUT = "see the image log; the builder is made without it"
TIMEOUT = 1800.0  # seconds; it downloads about 60 MB of packages


def unavailable_reason(platform: Platform, host: Arch | None) -> str | None:
    """Why a builder of `platform` made on an engine of `host` gets no cross toolchain;
    None when it gets one."""
    if host is None or host == platform.arch:
        return "the engine runs this arch natively"
    if platform.family is not Family.DEB:
        return (
            f"{platform.family.value} releases ship no user-space cross compiler: "
            "jobs compile under emulation"
        )
    return None


class NativePartError(OrchestrateError):
    """Making a natively made part failed; the builder is made without it."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(message, hint=WITHOUT)
        self.part = part


@dataclass(frozen=True, kw_only=True)
class NativePart:
    """An archive a builder made under emulation carries, made in a container of the
    engine's arch. The host keeps it under its key (what it is made from), so it is
    made once, and only when a builder that takes it is built."""

    name: str  # its context name
    key: str  # what it is made from
    what: str  # what the log says is made
    path: Path  # the host's copy
    make: Callable[[Callable[[str], None]], bytes]

    def archive(self, line: Callable[[str], None]) -> bytes:
        """The host's copy, made first when there is none."""
        with host_lock(f"cross|{self.path.resolve()}"):  # two runs sharing a cache make it once
            if not self.path.is_file():
                line(f"making {self.what}")
                try:
                    data = self.make(line)
                except OrchestrateError as exc:
                    raise NativePartError(self.name, exc.message) from None
                self.path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(self.path, data)
            return self.path.read_bytes()


def toolchain_part(
    platform: Platform,
    engine: Engine,
    host: Arch,
    log: Path,
    *,
    line: Callable[[str], None],
    layout: RunLayout,
) -> tuple[CrossToolchain, NativePart]:
    """The toolchain for `platform` on `host`, named by its key, and its maker."""
    host_platform = dataclasses.replace(platform, arch=host)
    base_id = ensure_base(host_platform, engine, log, line, bases=layout.bases)
    script = (templates_dir() / "scripts" / SCRIPT).read_bytes()
    identity = base_identity(engine, base_id)
    key = hashlib.sha256(identity.encode() + b"\0" + script).hexdigest()[:16]
    toolchain = CrossToolchain(host=host, target=platform.arch, key=key)
    part = NativePart(
        name=toolchain.context_name,
        key=key,
        what=f"a native {host.value} cross toolchain for {platform.arch.value}",
        path=layout.cross / f"{platform.name}-on-{host.value}-{key}.tar.gz",
        make=partial(_make, engine, host, base_id=base_id, target=platform.arch, script=script),
    )
    return toolchain, part


def _make(
    engine: Engine,
    host: Arch,
    line: Callable[[str], None],
    *,
    base_id: str,
    target: Arch,
    script: bytes,
) -> bytes:
    request = RunRequest(
        image=base_id,
        command=("sh", f"/context/{SCRIPT}", target.triplet, PREFIX),
        platform=host,
        user="root",
    )
    tar = run_and_take(
        engine,
        request,
        {SCRIPT: script},
        PREFIX,
        line=line,
        what=f"the {host.value} cross toolchain for {target.value}",
        hint=f"{WITHOUT}: its jobs compile under emulation",
    )
    archive = packed(tar)
    loader = toolchain_info(archive)["loader"]
    if loader != host.loader:  # the builder links the loader the arch's psABI names
        raise OrchestrateError(f"the cross toolchain's loader is {loader}, not {host.loader}")
    return archive


def toolchain_info(archive: bytes) -> dict[str, object]:
    """The archive's cross/toolchain.json."""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive))) as tar:
        member = tar.extractfile("cross/toolchain.json")
        if member is None:
            raise OrchestrateError("the cross toolchain archive has no cross/toolchain.json")
        info: dict[str, object] = json.loads(member.read())
    return info


def venvs_part(
    platform: Platform,
    matrix: Matrix,
    engine: Engine,
    host: Arch,
    *,
    log: Path,
    line: Callable[[str], None],
    layout: RunLayout,
) -> tuple[ToolVenvs, NativePart]:
    """The tool venvs for `platform`'s Pythons made natively on `host`, named by their
    key, and their maker: from the builder's own settings (extra CAs, pip.conf, apt
    sources)."""
    host_platform = dataclasses.replace(platform, arch=host)
    base_id = ensure_base(host_platform, engine, log, line, bases=layout.bases)
    context = {
        VENVS_SCRIPT: (templates_dir() / "scripts" / VENVS_SCRIPT).read_bytes(),
        "apt-sources.list": "".join(f"{s}\n" for s in platform.apt_sources).encode(),
        **settings_files(matrix),
    }
    command = ("sh", f"/context/{VENVS_SCRIPT}", " ".join(platform.python), *TOOLS)
    key = _key(base_identity(engine, base_id), command, context)
    request = RunRequest(
        image=base_id,
        command=command,
        platform=host,
        user="root",
        env=matrix.builder.fetch_environment(),
    )
    venvs = ToolVenvs(host=host, key=key)
    part = NativePart(
        name=venvs.context_name,
        key=key,
        what=f"the tool venvs natively on {host.value} for {platform.arch.value}",
        path=layout.cross / f"venvs-{platform.release_name}-on-{host.value}-{key}.tar.gz",
        make=partial(_make_venvs, engine, request, context),
    )
    return venvs, part


def _make_venvs(
    engine: Engine,
    request: RunRequest,
    context: Mapping[str, bytes],
    line: Callable[[str], None],
) -> bytes:
    tar = run_and_take(
        engine,
        request,
        context,
        "/opt/orchestrate",
        line=line,
        what=f"the tool venvs on {request.platform.value}",
        hint=f"{WITHOUT}: the builder makes them itself, under emulation",
    )
    return packed(tar)


def _key(base_id: str, command: tuple[str, ...], context: dict[str, bytes]) -> str:
    """What the venvs are made from: the base, the command and every context file."""
    files = sorted((name, hashlib.sha256(data).hexdigest()) for name, data in context.items())
    return hashlib.sha256(json.dumps([base_id, command, files]).encode()).hexdigest()[:16]


def run_and_take(
    engine: Engine,
    request: RunRequest,
    context: Mapping[str, bytes],
    path: str,
    *,
    line: Callable[[str], None],
    what: str,
    hint: str,
) -> bytes:
    """Run `request` with `context` under /context; `path`, as the engine's tar of it."""
    with engine.container(request) as box:
        box.put("/", deterministic_tar({f"context/{n}": d for n, d in context.items()}))
        outcome = box.start_and_wait(TIMEOUT, lambda b: line(b.decode(errors="replace")))
        if outcome.exit_code != 0:
            raise OrchestrateError(f"making {what} failed (exit {outcome.exit_code})", hint=hint)
        return box.get(path)


def packed(tar: bytes) -> bytes:
    """A native part's archive: `repacked`, gzipped at zlib's fastest level. The host
    keeps it and a build context carries it, but no registry takes it as it is (the
    builder's layer is its files). For the 207 MB of an arm64 toolchain, zlib's
    default level 9 costs ten times the CPU of level 1, for a tenth fewer bytes."""
    return gzip.compress(repacked(tar), compresslevel=1, mtime=0)


def repacked(tar: bytes) -> bytes:
    """The engine's tar of a folder made in a container, its members in name order and
    without times: the same files give the same bytes on any day, host or engine, so
    a builder that carries the archive keeps its inputs hash (and stays fresh) when a
    new runner or cache makes the archive again."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(tar)) as source,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dest,
    ):
        for member in sorted(source.getmembers(), key=lambda m: m.name):
            info = tarfile.TarInfo(member.name)
            info.type, info.mode, info.linkname = member.type, member.mode, member.linkname
            info.uid, info.gid = member.uid, member.gid
            info.uname, info.gname = member.uname, member.gname
            info.size = member.size if member.isfile() else 0
            dest.addfile(info, source.extractfile(member) if member.isfile() else None)
    return out.getvalue()


ROOT = "/target"  # in the native container, where the script makes the root
ROOT_TAR = "/tmp/orchestrate-root.tar"  # and where it writes the root's tar
ROOT_HINT = (
    "see the image log; `builder.native_packages: false` in the matrix installs "
    "the packages under emulation instead"
)


def foreign_root_for(
    platform: Platform, matrix: Matrix, host: Arch | None, venvs: ToolVenvs | None
) -> ForeignRoot | None:
    """A foreign root when `platform`'s builder is made under emulation on an engine of
    `host` from a bootstrapped Debian-family base, with natively made tool venvs
    (they carry the trust store), unless the matrix turns it off."""
    if host is None or venvs is None or unavailable_reason(platform, host) is not None:
        return None
    if not matrix.builder.native_packages or not isinstance(platform.base, Bootstrap):
        return None
    return ForeignRoot(host=host)


ROOT_KEY = "org.orchestrate.root-key"  # what the root image was made from


@dataclass(frozen=True, kw_only=True)
class Where:
    """Where a builder is made: its engine, its log (path and writer) and the run's
    layout."""

    engine: Engine
    log: Path
    line: Callable[[str], None]
    layout: RunLayout


def make_foreign_root(
    rendered: Rendered,
    matrix: Matrix,
    where: Where,
    *,
    venvs: NativePart,
    base_id: str,
    again: bool,
) -> str:
    """The ID of the engine's image of `rendered`'s foreign root, tagged as its
    Dockerfile names it: the one made before from the same bases' content and
    inputs, unless `again` or there is none; then the host's copy of it, loaded
    (another engine of this host made it); else made in a native container of its
    release with the tool `venvs`, and the host keeps a copy."""
    platform, root = rendered.platform, rendered.foreign_root
    if root is None:
        raise OrchestrateError(f"{platform.name}: its builder has no foreign root")
    engine, line, layout = where.engine, where.line, where.layout
    native_platform = dataclasses.replace(platform, arch=root.host)
    native = ensure_base(native_platform, engine, where.log, line, bases=layout.bases)
    context = foreign_root_inputs(rendered.files)
    made_from = (base_identity(engine, native), venvs.key)
    key = _key(base_identity(engine, base_id), made_from, context)
    kept = layout.cross / f"root-{platform.name}-on-{root.host.value}-{key}.tar"
    locks = (f"foreign-root|{engine.url}|{root.reference}", f"cross|{kept.resolve()}")
    with host_lock(locks[0]), host_lock(locks[1]):
        found = None if again else _engines_root(engine, root.reference, key, kept, line=line)
        if found is not None:
            return found
        if again or not kept.is_file():
            files = {**context, venvs.name: venvs.archive(line)}
            tar = _make_root(engine, rendered, (base_id, native), files, matrix=matrix, line=line)
            keep_root(kept, tar)
        else:
            line(f"foreign root: the host's copy, {kept.name}")
            tar = kept.read_bytes()
        request = ImageLoadRequest(
            tag=root.reference, files=tar, platform=platform.arch, labels={ROOT_KEY: key}
        )
        return _loaded(engine, request, line=line)


def _loaded(engine: Engine, request: ImageLoadRequest, *, line: Callable[[str], None]) -> str:
    loaded = engine.load(request)
    line(f"foreign root: {request.tag} ({loaded[:19]}) loaded, {len(request.files) >> 20} MB")
    return loaded


def _engines_root(
    engine: Engine, tag: str, key: str, kept: Path, *, line: Callable[[str], None]
) -> str | None:
    """The engine's root image made from `key`, if it has one; the host then keeps a
    copy of it if it has none (made before the host kept copies)."""
    found = engine.image(tag)
    if found is None or found.labels.get(ROOT_KEY) != key:
        return None
    line(f"foreign root: {tag} ({found.id[:19]}) is made from these inputs")
    if not kept.is_file():
        keep_root(kept, _root_of(engine, found.id, Arch(found.arch)))
    return found.id


def keep_root(path: Path, tar: bytes) -> None:
    """The host's copy of a foreign root, for its other engines; the platform's older
    copies go (each is hundreds of MB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = path.name.rsplit("-", 1)[0] + "-"
    for old in path.parent.glob(f"{prefix}*.tar"):
        old.unlink(missing_ok=True)
    write_atomic(path, tar, sync=False)  # a cache: lost, it is made again


def _make_root(
    engine: Engine,
    rendered: Rendered,
    ids: tuple[str, str],
    context: Mapping[str, bytes],
    *,
    matrix: Matrix,
    line: Callable[[str], None],
) -> bytes:
    """Run the script in the native base (`ids`: the builder's base, the native one);
    the tar it writes of the root, which it makes in RAM. Made on the container's own
    disk, an arm64 root cost a 2-core CI host 28 s to make, 1.7 s to delete with its
    container and 13 s to load; in RAM, 23 s, 0.3 s and 8 s. Its ext4 has no journal,
    and then the inode allocator steps over each inode deleted in the last minute
    (`recently_deleted` in https://github.com/torvalds/linux/blob/master/fs/ext4/ialloc.c).
    Gzip and gunzip would cost more than a local engine takes to move the tar."""
    platform, root = rendered.platform, rendered.foreign_root
    assert root is not None  # only a builder with a foreign root gets here
    line(f"installing the packages natively on {root.host.value} for {platform.arch.value}")
    base_id, native_id = ids
    base = _root_of(engine, base_id, platform.arch)
    packages = context["packages.txt"].decode().split()
    request = RunRequest(
        image=native_id,
        command=(
            "sh",
            f"/context/{FOREIGN_ROOT_SCRIPT}",
            platform.arch.debian,
            ROOT,
            ROOT_TAR,
            *packages,
        ),
        platform=root.host,
        user="root",
        env=matrix.builder.fetch_environment(),
        ram=(ROOT,),
    )
    what = f"the {platform.arch.value} builder's packages natively"
    files = {**context, "base.tar": base}
    taken = run_and_take(engine, request, files, ROOT_TAR, line=line, what=what, hint=ROOT_HINT)
    tar = archived_file(taken)
    if tar is None:
        raise OrchestrateError(f"making {what} wrote no {ROOT_TAR}", hint=ROOT_HINT)
    return tar


def _root_of(engine: Engine, image_id: str, arch: Arch) -> bytes:
    """The image's file system as a tar, from a container never started."""
    request = RunRequest(image=image_id, command=("true",), platform=arch, network=False)
    with engine.container(request) as box:
        return box.get("/")
