"""Render a platform's builder Dockerfile and its build context. Pure: no Docker.

Templates live in `images/` (one per package family, shared blocks in
`_common.j2`) and render with StrictUndefined, so a missing variable is an
error naming the template, the line and the platform rather than an empty
string in a Dockerfile. Parent images come from the model, never from
parsing a FROM line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import tarfile
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2

from orchestrator.config import Bootstrap, Matrix, PipSettings
from orchestrator.config.matrix import Platform
from orchestrator.core.errors import InternalError, TemplateError
from orchestrator.core.quoting import one_line, shell_word
from orchestrator.core.redact import strip_credentials
from orchestrator.model import Arch

# The in-container scripts a builder image carries (smoke_check.py runs in the smoke
# test's bare base image instead, copied in per check).
BUILDER_SCRIPTS = ("job.py", "probe.py")
# Tools every builder's venvs get; pinned so that the same inputs give the same image.
TOOLS = ("pip==24.3.1", "packaging==24.2", "build==1.2.2.post1", "wheel==0.45.1")


def templates_dir() -> Path:
    """`$ORCHESTRATE_IMAGES_DIR`, else the package's `_images`: in a checkout a symlink
    to the repository's `images/`, in an installed wheel a copy of it."""
    explicit = os.environ.get("ORCHESTRATE_IMAGES_DIR")
    return Path(explicit) if explicit else Path(__file__).resolve().parents[1] / "_images"


@cache
def _environment(root: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - Dockerfiles, not HTML
    )
    # Every matrix value a template prints goes through one of these: a newline in
    # one would start a new Dockerfile instruction.
    env.filters["shell"] = lambda value: shell_word(str(value), "a matrix value")
    env.filters["line"] = lambda value: one_line(str(value), "a matrix value")
    return env


@dataclass(kw_only=True, frozen=True)
class CrossToolchain:
    """A native cross toolchain for a builder made under emulation (see cross.py),
    named by its key (what it is made from): the builder's inputs hash the key, so
    its freshness is known before the archive is made, and a fresh builder never
    needs it."""

    host: Arch  # where it runs: the engine's arch
    target: Arch
    key: str
    context_name: str = "cross-toolchain.tar.gz"  # gzip'd tar of cross/, under /opt/orchestrate/

    @property
    def loader(self) -> str:
        """The host arch's dynamic loader, linked in the builder to the toolchain's copy."""
        return self.host.loader

    @property
    def loader_dir(self) -> str:
        return self.loader.rsplit("/", 1)[0] or "/"

    @property
    def loader_name(self) -> str:
        return self.loader.rsplit("/", 1)[-1]


@dataclass(kw_only=True, frozen=True)
class ToolVenvs:
    """The tool venvs of a builder made under emulation, made natively (see cross.py),
    named by their key as the toolchain is."""

    host: Arch  # the engine's arch, where they are made
    key: str
    context_name: str = "tool-venvs.tar.gz"  # gzip'd tar of orchestrate/pyX.Y/, under /opt/


@dataclass(kw_only=True, frozen=True)
class ForeignRoot:
    """The root file system of a builder made under emulation, its packages installed
    by the engine's own apt and dpkg (see cross.py). It is made only when the
    builder is built, from the recipe `render` puts under `foreign-root/`: those
    files, not the archive, decide the builder's freshness."""

    host: Arch  # the engine's arch, whose base container installs the packages
    reference: str = ""  # the engine's tag of it, set by `render`


FOREIGN_ROOT_SCRIPT = "foreign-root.sh"
FOREIGN_ROOT_RECIPE = "foreign-root"  # the context folder of its recipe


def foreign_root_inputs(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """What a foreign root is made from, named as its script sees them: the recipe
    and the extra CAs, out of the builder's context `files` (and the tool venvs,
    which `Rendered.native` names)."""
    prefix = f"{FOREIGN_ROOT_RECIPE}/"
    recipe = {n.removeprefix(prefix): d for n, d in files.items() if n.startswith(prefix)}
    return {**recipe, **{n: d for n, d in files.items() if n.startswith("ca/")}}


def foreign_root_reference(
    platform: Platform, host: Arch, files: Mapping[str, bytes], venvs: ToolVenvs
) -> str:
    """The engine's tag of the root made from the builder's context `files` and
    `venvs` on `host`: the builder starts FROM it, and two matrices with the same
    packages share it."""
    inputs = foreign_root_inputs(files)
    hashes = sorted((name, hashlib.sha256(data).hexdigest()) for name, data in inputs.items())
    parts = [host.value, hashes, venvs.key]
    key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]
    return f"orchestrate-root:{platform.name}-{key}"


def scratch_context(root: bytes, files: Mapping[str, bytes], steps: str = "") -> bytes:
    """The context of an image that is the tar `root`, then `steps` (which may use
    `files`). The root goes in as it is, not read member by member: a foreign root
    is about 700 MB. It is the first step on scratch: Engine 20.10's classic builder
    takes the platform of an image that starts with another step from the host."""
    name = "root.tar"
    dockerfile = f'FROM scratch\nADD {name} /\n{steps}CMD ["/bin/bash"]\n'
    head = deterministic_tar({"Dockerfile": dockerfile.encode(), **files})
    block = tarfile.BLOCKSIZE
    with tarfile.open(fileobj=io.BytesIO(head)) as opened:  # up to its end-of-archive blocks
        end = max(m.offset_data + -(-m.size // block) * block for m in opened)
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(root), 0o644
    padding = b"\0" * (-len(root) % block)
    return b"".join((head[:end], info.tobuf(tarfile.PAX_FORMAT), root, padding, b"\0" * 2 * block))


def builder_packages(platform: Platform) -> tuple[str, ...]:
    """What a Debian-family builder installs over its base."""
    pythons = (f"python{v}{part}" for v in platform.python for part in ("", "-dev", "-venv"))
    return ("ca-certificates", "build-essential", *pythons, *platform.packages)


def foreign_root_recipe(platform: Platform, root: Path) -> dict[str, bytes]:
    """The context files a foreign root is made from (see images/scripts/foreign-root.sh)."""
    if not isinstance(platform.base, Bootstrap):
        raise TemplateError(f"{platform.name}: a foreign root needs a bootstrapped base")
    files = {
        FOREIGN_ROOT_SCRIPT: (root / "scripts" / FOREIGN_ROOT_SCRIPT).read_bytes(),
        "packages.txt": "".join(f"{p}\n" for p in builder_packages(platform)).encode(),
        "apt-sources.list": "".join(f"{s}\n" for s in platform.apt_sources).encode(),
    }
    return {f"{FOREIGN_ROOT_RECIPE}/{name}": data for name, data in files.items()}


@dataclass(frozen=True)
class Rendered:
    """One platform's Dockerfile and every other file of its build context."""

    platform: Platform
    base: str
    dockerfile: str
    files: Mapping[str, bytes]
    foreign_root: ForeignRoot | None = None  # the root it starts FROM, made when built
    # The natively made archives of the context, by context name: their keys.
    native: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def inputs_hash(self, base_digest: str) -> str:
        """What decides freshness: Dockerfile, context files, the natively made
        archives' keys and the base digest."""
        digest = hashlib.sha256()
        files = {"Dockerfile": normalized(self.dockerfile).encode(), **self.files}
        for name, data in sorted(files.items()):
            digest.update(f"{name}\0{len(data)}\0".encode())
            digest.update(data)
        for name, key in sorted(self.native.items()):
            digest.update(f"native\0{name}\0{key}\0".encode())
        digest.update(f"base\0{base_digest}".encode())
        return digest.hexdigest()

    def recipe_hash(self) -> str:
        """The inputs without the base image: equal when only the base moved."""
        return self.inputs_hash("")

    def context(self, archives: Mapping[str, bytes] | None = None) -> bytes:
        """A reproducible tar (sorted, zero mtimes, root-owned) of the build context,
        with the `archives` its natively made parts are, by context name."""
        archives = archives or {}
        if sorted(archives) != sorted(self.native):  # the caller's bug, not the matrix's
            raise InternalError(
                f"{self.platform.name}: the context takes {sorted(self.native)}, "
                f"not {sorted(archives)}"
            )
        files = {"Dockerfile": self.dockerfile.encode(), **self.files, **archives}
        return deterministic_tar(files)


def normalized(dockerfile: str) -> str:
    """The Dockerfile without blank lines, comments and trailing space: what the
    builder acts on. Whitespace edits in a template then rebuild nothing."""
    lines = (line.rstrip() for line in dockerfile.splitlines())
    return "\n".join(line for line in lines if line and not line.lstrip().startswith("#"))


def deterministic_tar(files: Mapping[str, bytes], modes: Mapping[str, int] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = (modes or {}).get(name, 0o755 if name.endswith(".py") else 0o644)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def base_reference(platform: Platform) -> str:
    """The image the builder starts FROM: the matrix's reference or our bootstrapped base."""
    if isinstance(platform.base, Bootstrap):
        return bootstrap_tag(platform.base, platform.arch.value)
    return platform.base


def bootstrap_tag(spec: Bootstrap, arch: str) -> str:
    key = f"{spec.mirror}|{spec.variant}|{bootstrap_sources(spec)}"
    return f"orchestrate-base:{spec.suite}-{arch}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


UNRELEASED = frozenset({"sid", "unstable", "experimental"})


def bootstrap_sources(spec: Bootstrap) -> str:
    """The bootstrapped base's /etc/apt/sources.list: the suite, then its updates and
    security pockets (see `Bootstrap.updates`)."""
    lines = [f"deb {spec.mirror} {spec.suite} main"]
    if spec.updates and spec.suite not in UNRELEASED:
        security = spec.mirror + "-security" if spec.mirror.endswith("/debian") else spec.mirror
        lines += [
            f"deb {spec.mirror} {spec.suite}-updates main",
            f"deb {security} {spec.suite}-security main",
        ]
    return "".join(line + "\n" for line in lines)


def pip_conf(pip: PipSettings) -> str | None:
    """The builder's pip.conf, without credentials: jobs get the full URLs at run time."""
    lines = ["[global]"]
    if pip.index_url:
        lines.append(f"index-url = {strip_credentials(pip.index_url)}")
    if pip.extra_index_urls:
        urls = " ".join(strip_credentials(u) for u in pip.extra_index_urls)
        lines.append(f"extra-index-url = {urls}")
    if pip.trusted_hosts:
        lines.append("trusted-host = " + " ".join(pip.trusted_hosts))
    lines.append(f"timeout = {pip.timeout}")
    return "\n".join(lines) + "\n" if len(lines) > 2 or pip.timeout != 60 else None


def settings_files(matrix: Matrix) -> dict[str, bytes]:
    """The context files that carry the matrix's builder settings: extra CAs
    (`ca/extra-N-NAME.crt`) and pip's configuration (`pip.conf`)."""
    files = {}
    for i, cert in enumerate(matrix.builder.ca_certificates):
        name = f"extra-{i}-{re.sub(r'[^A-Za-z0-9._-]', '_', cert.stem)}.crt"
        files[f"ca/{name}"] = cert.read_bytes()
    conf = pip_conf(matrix.builder.pip)
    if conf:
        files["pip.conf"] = conf.encode()
    return files


def render(
    platform: Platform,
    matrix: Matrix,
    root: Path | None = None,
    *,
    toolchain: CrossToolchain | None = None,
    venvs: ToolVenvs | None = None,
    foreign_root: ForeignRoot | None = None,
) -> Rendered:
    """The Dockerfile and context; for a builder made under emulation, the native
    cross compiler's archive (`toolchain`) and the tool venvs' (`venvs`) too, and
    with `foreign_root` (which needs `venvs`), the recipe of its root file system."""
    root = root or templates_dir()
    files = settings_files(matrix)
    ca_names = [name.removeprefix("ca/") for name in files if name.startswith("ca/")]
    for name in BUILDER_SCRIPTS:
        script = root / "scripts" / name
        if script.is_file():  # a templates folder of one's own may hold none
            files[f"scripts/{name}"] = script.read_bytes()
    template_name = f"{platform.family.value}.Dockerfile.j2"
    base = base_reference(platform)
    native = {p.context_name: p.key for p in (toolchain, venvs) if p is not None}
    if foreign_root is not None:
        if venvs is None:
            raise TemplateError(f"{platform.name}: a foreign root needs natively made venvs")
        files.update(foreign_root_recipe(platform, root))
        reference = foreign_root_reference(platform, foreign_root.host, files, venvs)
        foreign_root = dataclasses.replace(foreign_root, reference=reference)
        native.pop(venvs.context_name)  # inside the root
    variables: dict[str, object] = {
        "cross": toolchain,
        "venvs": venvs,
        "foreign_root": foreign_root,
        "packages": builder_packages(platform),
        "platform": platform,
        "base": base,
        "builder": matrix.builder,
        "ca_files": ca_names,
        "pip_conf": "pip.conf" in files,
        "tools": TOOLS,
    }
    dockerfile = _render_template(root, template_name, variables)
    return Rendered(platform, base, dockerfile, files, foreign_root, native)


CHANGES_FILE = "changes.txt"  # under the probe's folder: `package old new` a line


def upgrade_template(platform: Platform, root: Path | None = None) -> str | None:
    """The template that refreshes `platform`'s builder in place, if its family has one."""
    name = f"{platform.family.value}-upgrade.Dockerfile.j2"
    return name if ((root or templates_dir()) / name).is_file() else None


def render_upgrade(
    platform: Platform, matrix: Matrix, previous: str, root: Path | None = None
) -> str:
    """The Dockerfile that refreshes the builder `previous` (an image ID) in place."""
    root = root or templates_dir()
    name = upgrade_template(platform, root)
    if name is None:
        raise TemplateError(f"no upgrade template for the {platform.family.value} family in {root}")
    variables: dict[str, object] = {
        "platform": platform,
        "previous": previous,
        "user": matrix.builder.user,
        "changes": f"/etc/orchestrate/{CHANGES_FILE}",
    }
    return _render_template(root, name, variables)


def _render_template(root: Path, name: str, variables: dict[str, object]) -> str:
    platform = variables["platform"]
    assert isinstance(platform, Platform)
    try:
        return _environment(root).get_template(name).render(**variables)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"{root / (exc.name or name)}:{exc.lineno}: template syntax error: {exc.message} "
            f"(platform {platform.name})"
        ) from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(
            f"template {exc.name} not found in {root} "
            f"(platform {platform.name}, family {platform.family.value})"
        ) from None
    except jinja2.UndefinedError as exc:
        where = _template_frame(exc, root, name)
        raise TemplateError(
            f"{where}: undefined variable: {exc.message} (platform {platform.name})"
        ) from None


def _template_frame(exc: BaseException, root: Path, default: str) -> str:
    """Jinja puts the template's own file and line into the traceback: find it."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2"):
            return f"{frame.filename}:{frame.lineno}"
    return str(root / default)
