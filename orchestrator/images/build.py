"""Build one platform's builder image on one engine, unless it is fresh."""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from orchestrator import revision
from orchestrator.config import Matrix
from orchestrator.config.matrix import Platform
from orchestrator.core.errors import EngineError, OrchestrateError, RegistryError
from orchestrator.core.files import host_lock
from orchestrator.core.layout import RunLayout
from orchestrator.core.redact import redact
from orchestrator.engines import Engine, ImageBuildRequest, ImageInfo, RunRequest
from orchestrator.images.base import ensure_base
from orchestrator.images.cross import (
    NativePart,
    NativePartError,
    Where,
    foreign_root_for,
    make_foreign_root,
    toolchain_part,
    unavailable_reason,
    venvs_part,
)
from orchestrator.images.facts import (
    NativeCompiler,
    PackageChange,
    ProbeCache,
    RuntimeFacts,
    parse_changes,
    parse_native_compiler,
    parse_probe,
    parse_runtime,
)
from orchestrator.images.registry import Registry, RegistryClient
from orchestrator.images.render import (
    CHANGES_FILE,
    CrossToolchain,
    Rendered,
    ToolVenvs,
    deterministic_tar,
    render,
    render_upgrade,
    upgrade_template,
)
from orchestrator.images.stale import (
    LABEL_UPGRADES,
    Stale,
    build_labels,
    stale_reason,
    upgrades,
)
from orchestrator.images.sysdeps import RUNTIME_FACTS
from orchestrator.model import Arch, ImageStatus

PROBE_DIR = "/etc/orchestrate"
PROBE_FILE = "probe.json"
RUNTIME_FILE = RUNTIME_FACTS.rsplit("/", 1)[-1]


@dataclass(frozen=True, kw_only=True)
class ImageResult:
    platform: str
    status: ImageStatus
    engine: str = ""
    emulated: bool = False
    duration: float = 0.0
    log: str = ""
    image_id: str = ""
    reason: str = ""
    digest: str = ""  # after push
    pull_ref: str = ""  # repo@sha256:... when this image is in the registry (pushed or pulled)
    # What the image's probe measured inside it (not in the report: see ImageFacts).
    tags: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    glibc: str = ""
    native_compiler: NativeCompiler | None = None
    runtime: RuntimeFacts | None = field(default=None, repr=False)  # in ImageFacts only
    in_place: bool = False  # refreshed in place: the previous builder upgraded
    changes: tuple[PackageChange, ...] = ()  # what that refresh changed

    def as_dict(self) -> dict[str, object]:
        skip = ("tags", "glibc", "runtime", "changes")
        out = {k: v for k, v in self.__dict__.items() if k not in skip}
        out["native_compiler"] = self.native_compiler.as_dict() if self.native_compiler else None
        out["changes"] = [c.as_dict() for c in self.changes]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageResult:
        """A result read back from a report already checked against its schema."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        compiler = json.dumps({"native_compiler": data.get("native_compiler")})
        changes = tuple(PackageChange(**c) for c in data.get("changes", ()))
        return cls(
            **{
                **known,
                "status": ImageStatus(data["status"]),
                "native_compiler": parse_native_compiler(compiler),
                "changes": changes,
            },
        )


def image_tag(matrix: Matrix, platform: Platform) -> str:
    return f"{matrix.registry.url}/{matrix.registry.repository}:{platform.name}"


def release_tag(matrix: Matrix, release_name: str) -> str:
    return f"{matrix.registry.url}/{matrix.registry.repository}:{release_name}"


def source_revision() -> str:
    """`$ORCHESTRATE_REVISION`, else the commit this orchestrate was built from."""
    return revision()


@contextlib.contextmanager
def image_log(path: Path) -> Iterator[Callable[[str], None]]:
    """A writer of the image log's lines, each redacted (a build log quotes URLs:
    mirrors, indexes) and flushed for whoever follows the log."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as log:

        def line(text: str) -> None:
            log.write(redact(text.rstrip("\n")) + "\n")
            log.flush()

        yield line


def build_image(
    platform: Platform,
    matrix: Matrix,
    engine: Engine,
    log_path: Path,
    *,
    layout: RunLayout,
    force: bool = False,
    max_age: timedelta | None = None,
    probes: ProbeCache | None = None,
) -> ImageResult:
    """Make sure `engine` holds a fresh builder for `platform`; build it if not."""
    started = time.monotonic()
    with image_log(log_path) as line:
        where = Where(engine=engine, log=log_path, line=line, layout=layout)
        made = _made(platform, matrix, where, force=force, max_age=max_age)
        probed = _probe(platform, engine, made.image_id, probes=probes)
    pull = pull_ref(matrix, platform, engine, made.image_id)
    return _result(platform, engine, made, probed, pull=pull, started=started, log=log_path)


def _made(
    platform: Platform,
    matrix: Matrix,
    where: Where,
    *,
    force: bool,
    max_age: timedelta | None,
) -> Made:
    """The builder found fresh or built. A natively made part that cannot be made is
    left out, and the builder made without it, as it would be made on an engine of
    its own arch: its jobs compile under emulation, or it makes its own venvs."""
    failed: dict[str, str] = {}
    while True:
        try:
            return _made_once(platform, matrix, where, force=force, max_age=max_age, failed=failed)
        except NativePartError as exc:
            if exc.part in failed:
                raise
            failed[exc.part] = exc.message


def _made_once(
    platform: Platform,
    matrix: Matrix,
    where: Where,
    *,
    force: bool,
    max_age: timedelta | None,
    failed: Mapping[str, str],
) -> Made:
    """The base (for an emulated builder, a debootstrap whose second stage runs under
    QEMU) and the natively made parts, at once when the engine has no builder of
    this tag: it is certain to be built. Else the parts are made only if the
    builder turns out stale."""
    engine, log, line = where.engine, where.log, where.line
    with ThreadPoolExecutor(max_workers=2) as pool:
        base = pool.submit(ensure_base, platform, engine, log, line, bases=where.layout.bases)
        planned = _planned(platform, matrix, where, failed=failed)
        if planned.parts and engine.image(image_tag(matrix, platform)) is None:
            pool.submit(planned.prepare, line)
        return _fresh_or_built(
            matrix, engine, planned, base_id=base.result(), line=line, force=force, max_age=max_age
        )


def _result(
    platform: Platform,
    engine: Engine,
    made: Made,
    probed: Probed,
    *,
    pull: str,
    started: float,
    log: Path,
) -> ImageResult:
    return ImageResult(
        platform=platform.name,
        status=made.status,
        engine=engine.name,
        duration=_since(started),
        log=str(log),
        image_id=made.image_id,
        reason=made.why,
        tags=probed.tags,
        glibc=probed.glibc,
        native_compiler=probed.compiler,
        pull_ref=pull,
        runtime=probed.runtime,
        in_place=made.upgraded,
        changes=probed.changes if made.upgraded else (),
    )


@dataclass(frozen=True, kw_only=True)
class Planned:
    """A builder's render and the makers of what it takes from native containers: its
    natively made archives (by context name) and its foreign root."""

    rendered: Rendered
    parts: Mapping[str, NativePart]
    make_root: Callable[..., str] | None = None

    def archives(self, line: Callable[[str], None]) -> dict[str, bytes]:
        """The natively made archives its context takes, made when the host has none."""
        return {name: self.parts[name].archive(line) for name in self.rendered.native}

    def prepare(self, line: Callable[[str], None]) -> None:
        """Every part made ahead, the venvs (which a foreign root takes) first; one that
        fails is left for the build to meet and report."""
        for name in sorted(self.parts, key=lambda n: n != ToolVenvs.context_name):
            with contextlib.suppress(NativePartError):
                self.parts[name].archive(line)


def _planned(
    platform: Platform, matrix: Matrix, where: Where, *, failed: Mapping[str, str]
) -> Planned:
    """The builder's Dockerfile and context, naming what an emulated builder takes
    from native containers by its key; with the makers of those parts."""
    host = where.engine.info().arch  # two requests: asked once per builder
    toolchain = _toolchain(platform, matrix, where, host, failed=failed)
    venvs = _venvs(platform, matrix, where, host, failed=failed)
    parts = {part.name: part for _, part in filter(None, (toolchain, venvs))}
    foreign = foreign_root_for(platform, matrix, host, venvs and venvs[0])
    rendered = render(
        platform,
        matrix,
        toolchain=toolchain and toolchain[0],
        venvs=venvs and venvs[0],
        foreign_root=foreign,
    )
    if foreign is None or venvs is None:
        return Planned(rendered=rendered, parts=parts)
    make_root = partial(make_foreign_root, rendered, matrix, where, venvs=venvs[1])
    return Planned(rendered=rendered, parts=parts, make_root=make_root)


@dataclass(frozen=True, kw_only=True)
class Made:
    """The builder `_fresh_or_built` found or made."""

    image_id: str
    status: ImageStatus
    why: str
    upgraded: bool = False  # refreshed in place: its changes file is this run's


@dataclass(frozen=True, kw_only=True)
class Check:
    """A builder's tag as the engine holds it now, against this run's inputs."""

    tag: str
    inputs: str
    recipe: str
    existing: ImageInfo | None
    stale: Stale | None  # None: fresh
    now: datetime

    def fresh(self, line: Callable[[str], None]) -> Made | None:
        if self.stale is not None:
            return None
        assert self.existing is not None  # only an existing image can be fresh
        line(f"fresh: {self.tag} ({self.existing.id[:19]}) has inputs {self.inputs[:12]}")
        return Made(image_id=self.existing.id, status=ImageStatus.FRESH, why="inputs unchanged")


def _check(
    engine: Engine, tag: str, inputs: str, recipe: str, *, force: bool, max_age: timedelta | None
) -> Check:
    existing = engine.image(tag)
    now = datetime.now(UTC)
    labels = existing.labels if existing else None
    stale = stale_reason(labels, inputs, now, max_age, force=force, recipe=recipe)
    return Check(tag=tag, inputs=inputs, recipe=recipe, existing=existing, stale=stale, now=now)


def _fresh_or_built(
    matrix: Matrix,
    engine: Engine,
    planned: Planned,
    *,
    base_id: str,
    line: Callable[[str], None],
    force: bool,
    max_age: timedelta | None,
) -> Made:
    """The builder's image ID: the engine's own when its inputs hash is this one's (and
    it is young enough), else a new build, or the previous one upgraded in place when
    only its base or its age changed. A fresh builder is found without waiting, and
    without making its native parts; another run building the same platform's
    builder (under any tag) is waited for before a build: its layers are cached."""
    rendered = planned.rendered
    platform = rendered.platform
    inputs = rendered.inputs_hash(base_id)
    recipe = rendered.recipe_hash() if upgrade_template(platform) else ""
    check = partial(_check, engine, image_tag(matrix, platform), inputs, recipe)
    found = check(force=force, max_age=max_age).fresh(line)
    if found is not None:
        return found
    with host_lock(f"builder|{engine.url}|{platform.name}"):
        again = check(force=force, max_age=max_age)  # the run waited for may have built it
        found = again.fresh(line)
        if found is not None:
            return found
        return _build(matrix, engine, planned, again, base_id=base_id, line=line)


def _build(
    matrix: Matrix,
    engine: Engine,
    planned: Planned,
    check: Check,
    *,
    base_id: str,
    line: Callable[[str], None],
) -> Made:
    """The builder built from its base, or the previous one upgraded in place, as
    `check` says."""
    stale, platform = check.stale, planned.rendered.platform
    assert stale is not None
    line(f"building {check.tag}: {stale.why}")
    labels = build_labels(
        platform.name, check.inputs, base_id, source_revision(), now=check.now, recipe=check.recipe
    )
    previous = check.existing if stale.upgrade else None
    if previous is not None:  # one more refresh in place than the previous builder
        labels[LABEL_UPGRADES] = str(upgrades(previous.labels) + 1)
    context = _context(
        planned, matrix, previous, base_id=base_id, line=line, again=not stale.reuses_layers
    )
    request = ImageBuildRequest(
        tag=check.tag,
        context=context,
        platform=platform.arch,
        labels=labels,
        buildargs=matrix.builder.proxy.environment(),
        nocache=not stale.reuses_layers,
    )
    image_id = engine.build(request, line)
    upgraded = previous is not None
    return Made(image_id=image_id, status=ImageStatus.BUILT, why=stale.why, upgraded=upgraded)


def _context(
    planned: Planned,
    matrix: Matrix,
    previous: ImageInfo | None,
    *,
    base_id: str,
    line: Callable[[str], None],
    again: bool,
) -> bytes:
    """The context that refreshes the `previous` builder in place; else the rendered
    context with its natively made archives, the toolchain made while the foreign
    root (made `again` or not) installs."""
    if previous is not None:
        dockerfile = render_upgrade(planned.rendered.platform, matrix, previous.id)
        return deterministic_tar({"Dockerfile": dockerfile.encode()})
    with ThreadPoolExecutor(max_workers=1) as pool:
        archives = pool.submit(planned.archives, line)
        if planned.make_root is not None:
            planned.make_root(base_id=base_id, again=again)
        return planned.rendered.context(archives.result())


def _toolchain(
    platform: Platform,
    matrix: Matrix,
    where: Where,
    host: Arch | None,
    *,
    failed: Mapping[str, str],
) -> tuple[CrossToolchain, NativePart] | None:
    """The native cross toolchain a builder made under emulation on a `host` engine
    carries, and its maker; or None (the log says why: a native engine, an rpm
    release, the matrix turns it off, or making it failed)."""
    why = unavailable_reason(platform, host)
    if why is None and not matrix.builder.native_compiler:
        why = "builder.native_compiler is false in the matrix"
    why = why or failed.get(CrossToolchain.context_name)
    if why is not None or host is None:
        where.line(f"no native cross compiler: {why}")
        return None
    return toolchain_part(
        platform, where.engine, host, where.log, line=where.line, layout=where.layout
    )


def _venvs(
    platform: Platform,
    matrix: Matrix,
    where: Where,
    host: Arch | None,
    *,
    failed: Mapping[str, str],
) -> tuple[ToolVenvs, NativePart] | None:
    """The tool venvs made natively on a `host` engine for a builder made under
    emulation, and their maker; or None (a native engine, an rpm release, the matrix
    turns native parts off, or making them failed: the builder makes them)."""
    if host is None or unavailable_reason(platform, host) is not None:
        return None
    why = failed.get(ToolVenvs.context_name)
    if why is None and not matrix.builder.native_packages:
        why = "builder.native_packages is false"
    if why is not None:
        where.line(f"tool venvs made under emulation: {why}")
        return None
    return venvs_part(
        platform, matrix, where.engine, host, log=where.log, line=where.line, layout=where.layout
    )


@dataclass(frozen=True, kw_only=True)
class Probed:
    """What the image's probe measured at build time: tags per Python, glibc, the
    native cross compiler if the builder has one, its runtime facts, and what its
    last refresh in place changed."""

    tags: dict[str, tuple[str, ...]]
    glibc: str
    compiler: NativeCompiler | None
    runtime: RuntimeFacts | None
    changes: tuple[PackageChange, ...]


def _probe(
    platform: Platform, engine: Engine, image_id: str, *, probes: ProbeCache | None
) -> Probed:
    files = probe_files(engine, image_id, platform.arch)
    output = files.get(PROBE_FILE)
    if output is None:
        raise OrchestrateError(f"{platform.name}: the image's probe output is missing")
    tags, glibc = parse_probe(output)
    runtime = _runtime(files.get(RUNTIME_FILE))
    if probes is not None:  # for `orchestrate plan`, which builds no image
        probe: dict[str, object] = {"tags": tags, "glibc": glibc}
        if runtime is not None:
            probe["runtime"] = runtime.as_dict()
        probes.write(platform.name, image_id, probe)
    return Probed(
        tags=tags,
        glibc=glibc,
        compiler=parse_native_compiler(output),
        runtime=runtime,
        changes=parse_changes(files.get(CHANGES_FILE, b"")),
    )


def read_runtime(engine: Engine, image_id: str, arch: Arch) -> RuntimeFacts | None:
    """The image's runtime facts; None when it has none (made before runtime facts were recorded) or
    they are unreadable."""
    return _runtime(probe_files(engine, image_id, arch).get(RUNTIME_FILE))


def _runtime(text: bytes | None) -> RuntimeFacts | None:
    try:
        return parse_runtime(text) if text is not None else None
    except ValueError:
        return None


def probe_files(engine: Engine, image_id: str, arch: Arch) -> dict[str, bytes]:
    """The files the image build's probes wrote, by name, copied out of a container
    that is created and never started: no process, no QEMU, one engine round trip."""
    request = RunRequest(image=image_id, command=("true",), platform=arch, network=False)
    try:
        with engine.container(request) as box:
            data = box.get(PROBE_DIR)
    except EngineError:  # no such folder: an image that is not one of our builders
        return {}
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                out[member.name.rsplit("/", 1)[-1]] = handle.read()
    return out


def pull_ref(matrix: Matrix, platform: Platform, engine: Engine, image_id: str) -> str:
    """`repo@sha256:...` of this very image in the registry: the one its per-arch tag
    names there (pushed by any run: our pushes leave the engine no record), else one
    the engine pulled. Empty when neither holds, or the registry does not answer."""
    tag = image_tag(matrix, platform)
    repo = tag.rsplit(":", 1)[0]
    client = RegistryClient(Registry(matrix.registry.url, matrix.registry.insecure), timeout=10)
    with contextlib.suppress(RegistryError):
        if client.config_digest(matrix.registry.repository, platform.name) == image_id:
            found = client.manifest(matrix.registry.repository, platform.name)
            if found is not None:
                return f"{repo}@{found.digest}"
    info = engine.image(image_id)
    found_here = [d for d in (info.repo_digests if info else ()) if d.startswith(repo + "@")]
    return found_here[0] if found_here else ""


def pull_builder(
    platform: Platform, matrix: Matrix, engine: Engine, *, ref: str, log_path: Path
) -> str | None:
    """The builder pushed as `ref` (`repo@sha256:...`), pulled onto `engine` and given
    its per-arch tag there: the very image another engine holds, so a platform's jobs
    build in the same packages on every engine (a build here could take a mirror's
    newer ones), for the cost of a pull. None when the pull fails (a registry this
    engine cannot reach): the log says why, and the caller builds it."""
    with image_log(log_path) as line:
        line(f"pulling the pushed builder {ref}")
        try:
            engine.pull(ref, platform.arch, line)
        except RegistryError as exc:
            line(f"{exc.message}: building it here instead")
            return None
        found = engine.image(ref)
        if found is None:
            line(f"pulled {ref} but the engine does not show it: building it here instead")
            return None
        tag = image_tag(matrix, platform)
        engine.tag(found.id, tag)
        line(f"pulled: {tag} ({found.id[:19]})")
        return found.id


def _since(started: float) -> float:
    return round(time.monotonic() - started, 2)
