"""The matrix file's schema: frozen, typed, strict.

Closed sets (arch, package family) are enums. Every model forbids unknown
keys; the loader turns pydantic's errors into file:line messages with a
did-you-mean. Nothing after loading sees a raw dict.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from orchestrator.model import ARCH_ALIASES, Arch, EngineKind, Family

NAME_RE = r"^[a-z0-9][a-z0-9._-]*$"


class Model(BaseModel):
    # Lax mode so YAML lists become tuples and strings become paths; the
    # fields where YAML's own typing matters use Strict* types instead.
    # Each field's docstring is its description in the JSON Schema, which the
    # reference pages and editors show.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _arch_alias(value: Any) -> Any:
    return ARCH_ALIASES.get(value, value) if isinstance(value, str) else value


Name = Annotated[str, Field(pattern=NAME_RE, max_length=63)]
# Strings that end up in Dockerfiles and shell lines are checked against their own
# grammar, so that no newline or shell metacharacter can add an instruction.
# An image reference (distribution/reference's grammar, simplified): host[:port]/path[:tag][@digest]
IMAGE_REF_RE = (
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
PACKAGE_RE = {  # Debian policy 5.6.1; RPM names as Fedora's guidelines allow
    "deb": r"^[a-z0-9][a-z0-9+.-]+$",
    "rpm": r"^[A-Za-z0-9_][A-Za-z0-9._+-]*$",
}
PROJECT_RE = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"  # a normalized project name (PEP 503)
URL_RE = r"^(https?|socks5h?)://[^\s\"'\\`$;|&<>(){}]+$"
NO_PROXY_RE = r"^[A-Za-z0-9.,:*_/\[\]-]+$"


def _grammar(pattern: str, what: str, max_length: int) -> Any:
    def check(value: str) -> str:
        if len(value) > max_length or not re.fullmatch(pattern, value):
            shown = value if len(value) <= 60 else value[:60] + "..."
            raise ValueError(f"{shown!r} is not {what}")
        return value

    return AfterValidator(check)


ImageRef = Annotated[
    str,
    _grammar(IMAGE_REF_RE, "an image reference (e.g. debian:bookworm, host:5000/repo:tag)", 255),
]
ProjectName = Annotated[
    str,
    _grammar(PROJECT_RE, "a normalized project name (lower case, '-' between parts)", 200),
]
Url = Annotated[
    str,
    _grammar(
        URL_RE, "a URL (http, https or socks5) without spaces, quotes or shell characters", 2048
    ),
]
NoProxy = Annotated[
    str, _grammar(NO_PROXY_RE, "a comma-separated list of hosts, domains or CIDRs", 4096)
]
Host = Annotated[str, _grammar(r"^[A-Za-z0-9.-]+(:[0-9]+)?$", "a host name", 255)]


def check_packages(family: str, names: tuple[str, ...]) -> tuple[str, ...]:
    for name in names:
        if not re.fullmatch(PACKAGE_RE[family], name) or len(name) > 128:
            raise ValueError(f"{name!r} is not a valid {family} package name")
    return names


PythonVersion = Annotated[str, Field(pattern=r"^3\.\d{1,2}$")]
GlibcVersion = Annotated[str, Field(pattern=r"^2\.\d{1,2}$")]


class Bootstrap(Model):
    """A Debian-family base made by debootstrap instead of pulled."""

    bootstrap: Literal["debootstrap"]
    """The tool that makes the base: `debootstrap`."""
    suite: Name
    """The Debian or Ubuntu suite, e.g. `bookworm`."""
    mirror: Url = "http://deb.debian.org/debian"
    """The package mirror debootstrap reads (http:// or https://)."""
    variant: Literal["minbase", "buildd"] = "minbase"
    """debootstrap's variant: `minbase` (Essential and required packages) or `buildd`."""

    @field_validator("mirror")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.match(r"^https?://", value):
            raise ValueError("mirror must be an http:// or https:// URL")
        return value.rstrip("/")


class Tls(Model):
    ca_cert: Path | None = None
    """The CA that signed the engine's certificate (PEM)."""
    client_cert: Path | None = None
    """This client's certificate (PEM)."""
    client_key: Path | None = None
    """This client's key (PEM)."""
    verify: StrictBool = True
    """Verify the engine's certificate."""


# The resource limits a container may be given: the names Docker and Podman share.
UlimitName = Literal[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
]


class EngineSpec(Model):
    name: Name
    """The engine's name in logs, reports and `runners`."""
    url: str = "unix:///var/run/docker.sock"
    """`unix://` socket, `tcp://host:2376` (with `tls`) or `ssh://user@host`."""
    slots: Annotated[StrictInt, Field(ge=1, le=256)] = 2
    """How many jobs run on this engine at once."""
    tls: Tls | None = None
    """Client certificates for a `tcp://` engine."""
    kind: EngineKind | None = None
    """`docker` or `podman`; read from the engine's version answer when not given."""
    ulimits: dict[UlimitName, Annotated[StrictInt, Field(ge=0, le=2**31)]] | None = None
    """Soft = hard limit per name for every container, e.g. `{nofile: 1024}`; not given: the
    kind's default (Podman: nofile and nproc 1024); `{}`: none."""

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not re.match(r"^(unix|tcp|ssh)://.+", value):
            raise ValueError("engine url must start with unix://, tcp:// or ssh://")
        return value


class RegistrySpec(Model):
    url: Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+(:\d+)?$")]
    """Where builder images are pushed: `host[:port]`."""
    repository: Annotated[str, Field(pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$")]
    """The repository builder images are pushed to, tagged by platform."""
    insecure: StrictBool = False
    """Plain HTTP (loopback registries are always plain HTTP)."""


class IndexSpec(Model):
    upstream: str = "https://pypi.org/simple/"
    """The simple index the plan reads: PEP 691 JSON or PEP 503 HTML."""
    root: Path = Path("wheelhouse")
    """The published index, one folder per platform; relative to the matrix file."""
    cache_ttl: Annotated[StrictInt, Field(ge=0)] = 600
    """Seconds an upstream answer is reused without asking again."""
    concurrency: Annotated[StrictInt, Field(ge=1, le=128)] = 32
    """Parallel index requests."""
    keep_releases: Annotated[StrictInt, Field(ge=1, le=100)] = 3
    """Index releases kept per platform for `rollback`."""

    @field_validator("root")
    @classmethod
    def _root(cls, value: Path) -> Path:
        if re.search(r"[\x00-\x1f]", str(value)):
            raise ValueError("the index root's path holds a NUL byte or a control character")
        return value

    @field_validator("upstream")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^(https?|file)://", value):
            raise ValueError("upstream must be an http(s):// or file:// URL")
        return value if value.endswith("/") else value + "/"


class PipSettings(Model):
    index_url: Url | None = None
    """pip's index inside builders, instead of the upstream."""
    extra_index_urls: tuple[Url, ...] = ()
    """More indexes for pip inside builders."""
    trusted_hosts: tuple[Host, ...] = ()
    """Hosts pip trusts without TLS inside builders."""
    timeout: Annotated[StrictInt, Field(ge=1)] = 60
    """pip's network timeout in seconds."""


class Proxy(Model):
    http: Url | None = None
    """The HTTP proxy for image builds and fetch phases (never baked into an image)."""
    https: Url | None = None
    """The HTTPS proxy, as `http`."""
    no_proxy: NoProxy | None = None
    """Hosts reached without the proxy, comma-separated."""

    def environment(self) -> dict[str, str]:
        """Both spellings, as tools differ in which one they read."""
        out = {}
        for name, value in (
            ("http_proxy", self.http),
            ("https_proxy", self.https),
            ("no_proxy", self.no_proxy),
        ):
            if value:
                out[name] = out[name.upper()] = value
        return out


class BuilderSpec(Model):
    ca_certificates: tuple[Path, ...] = ()
    """Extra PEM files trusted inside builders."""
    pip: PipSettings = PipSettings()
    """pip's settings inside builders."""
    proxy: Proxy = Proxy()
    """Proxies for image builds and fetch phases."""
    user: Name = "builder"
    """The non-root user that builds."""
    job_timeout: Annotated[StrictInt, Field(ge=10)] = 3600
    """Seconds one wheel build may take."""
    build_constraints: Path | None = None
    """A constraints file for build tools (e.g. `Cython<3`), relative to the matrix file."""
    native_compiler: StrictBool = True
    """Emulated jobs compile with the builder's native cross compiler."""
    native_compiler_except: tuple[ProjectName, ...] = ()
    """Projects (normalized names) that compile under emulation all the same."""

    def fetch_environment(self) -> dict[str, str]:
        """What a job's fetch container gets at run time, credentials included: never
        baked into an image, never recorded in a report."""
        out = self.proxy.environment()
        if self.pip.index_url:
            out["PIP_INDEX_URL"] = self.pip.index_url
        if self.pip.extra_index_urls:
            out["PIP_EXTRA_INDEX_URL"] = " ".join(self.pip.extra_index_urls)
        return out


class DistroSpec(Model):
    name: Name
    """The distro's name, the first part of its platform names."""
    release: Name
    """The release, e.g. `bookworm`: the second part of its platform names."""
    family: Family
    """The package family: `deb` or `rpm`."""
    base: ImageRef | Bootstrap
    """The base image (a reference) or a base to bootstrap."""
    python: tuple[PythonVersion, ...] = Field(min_length=1)
    """Python versions, quoted (`"3.10"`, not the number 3.1)."""
    glibc: GlibcVersion
    """The release's glibc version, e.g. `"2.36"`."""
    arches: tuple[Arch, ...] = Field(min_length=1)
    """OCI arch names; `x86_64`, `aarch64`, `ppc64el` and `powerpc64le` are accepted as aliases."""
    packages: tuple[str, ...] = ()
    """System packages added to the family's list for this distro."""
    apt_sources: tuple[str, ...] = ()
    """Extra apt lines (deb family), e.g. the security or backports suite: builders, job system
    steps and smoke-test images install from them."""

    @field_validator("apt_sources")
    @classmethod
    def _apt_lines(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        family = info.data.get("family")
        if value and family is not Family.DEB:
            raise ValueError("apt_sources is for the deb family only")
        for line in value:
            if not re.fullmatch(APT_LINE_RE, line):
                raise ValueError(
                    f"{line!r} is not a one-line apt source "
                    "(e.g. 'deb http://deb.debian.org/debian-security bookworm-security main')"
                )
        return value

    @field_validator("packages")
    @classmethod
    def _package_names(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        family = info.data.get("family")
        return check_packages(family.value, value) if isinstance(family, Family) else value

    @field_validator("arches", mode="before")
    @classmethod
    def _aliases(cls, value: Any) -> Any:
        return [_arch_alias(v) for v in value] if isinstance(value, list) else value

    @field_validator("arches")
    @classmethod
    def _unique(cls, value: tuple[Arch, ...]) -> tuple[Arch, ...]:
        if len(set(value)) != len(value):
            raise ValueError("an arch is listed twice")
        return value

    @field_validator("python")
    @classmethod
    def _one_each(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        twice = sorted({v for v in value if value.count(v) > 1})
        if twice:
            raise ValueError(f"python {', '.join(twice)} is listed twice")
        return value


ENV_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
APT_LINE_RE = (
    r"^deb (\[[A-Za-z0-9=,._/ -]+\] )?https?://[A-Za-z0-9._~:/%@+-]+( [A-Za-z0-9._/-]+){2,20}$"
)
# Set by orchestrate itself for every job: an override may not change them.
RESERVED_ENV = ("ORCHESTRATE_", "SOURCE_DATE_EPOCH", "PYTHONHASHSEED", "PATH", "HOME")


def _parses(parse: Callable[[str], object], error: type[Exception], text: str, what: str) -> None:
    try:
        parse(text)
    except error:
        raise ValueError(f"{text!r} is not {what}") from None


class OverridePackages(Model):
    """Extra system packages per family, installed for the job only."""

    deb: tuple[str, ...] = ()
    """Debian-family package names."""
    rpm: tuple[str, ...] = ()
    """Red Hat-family package names."""

    @field_validator("deb", "rpm")
    @classmethod
    def _names(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        return check_packages(str(info.field_name), value)

    def of(self, family: Family) -> tuple[str, ...]:
        return self.deb if family is Family.DEB else self.rpm


class OverrideSpec(Model):
    """Per-package build settings, like fromager's per-package settings: for one
    normalized project name, narrowed by a platform glob and a version specifier."""

    name: ProjectName
    """A normalized project name."""
    platforms: Annotated[str, Field(pattern=r"^[A-Za-z0-9*?\[\]._-]+$", max_length=200)] = "*"
    """A platform glob."""
    versions: str = ""
    """A PEP 440 specifier, e.g. `>=3,<4`; empty: every version."""
    packages: OverridePackages = OverridePackages()
    """Extra system packages for this project's jobs, installed in a system step."""
    bindep: Path | None = None
    """A bindep file, relative to the matrix file, evaluated per platform."""
    bindep_profiles: tuple[Name, ...] = ("default", "compile")
    """bindep profiles, for this file and the sdist's own."""
    sdist_bindep: StrictBool = True
    """Use the bindep.txt the sdist ships, if it has one."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment of the build phase (`ORCHESTRATE_*`, `PATH`, `HOME` and the like refused)."""
    build_constraints: tuple[str, ...] = ()
    """Requirement lines added to `builder.build_constraints`, e.g. `Cython<3`."""
    pip_options: tuple[str, ...] = ()
    """Options for the fetch phase's pip, one per item, e.g. `--pre`."""
    timeout: Annotated[StrictInt, Field(ge=10)] | None = None
    """Seconds, instead of `builder.job_timeout`."""
    skip: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    """Leave the project out of the plan, with this reason."""
    test_command: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    """The smoke test's command after its imports, with `python` on PATH and the wheel
    importable."""
    runtime_packages: OverridePackages = OverridePackages()
    """Runtime packages for the smoke test beyond what the ELF files show (libraries loaded with
    dlopen or ctypes)."""
    smoke: StrictBool = True
    """`false`: no smoke test (e.g. a module that needs a service to import)."""

    @field_validator("test_command")
    @classmethod
    def _command(cls, value: str | None) -> str | None:
        if value is not None and any(c in value for c in "\n\r\0"):
            raise ValueError("test_command is one line")
        return value

    @field_validator("versions")
    @classmethod
    def _specifier(cls, value: str) -> str:
        _parses(SpecifierSet, InvalidSpecifier, value, "a version specifier (e.g. '>=3,<4')")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not re.fullmatch(ENV_NAME_RE, key):
                raise ValueError(f"{key!r} is not an environment variable name")
            if key.startswith(RESERVED_ENV):
                raise ValueError(f"{key} is set by orchestrate for every job")
            if any(c in text for c in "\n\r\0") or len(text) > 4096:
                raise ValueError(f"the value of {key} spans lines, has a NUL byte or is too long")
        return value

    @field_validator("build_constraints")
    @classmethod
    def _constraints(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for line in value:
            _parses(Requirement, InvalidRequirement, line, "a requirement (e.g. 'Cython<3')")
        return value

    @field_validator("pip_options")
    @classmethod
    def _pip_options(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for option in value:
            if not option.startswith("-") or any(c in option for c in "\n\r\0"):
                raise ValueError(f"{option!r} is not a pip option (one per item, e.g. '--pre')")
        return value


class BranchSpec(Model):
    """One constraints source, e.g. OpenStack's master or a stable branch, and the
    platforms that build it: the explicit platform x branch mapping."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", max_length=100)]
    """The branch's name, e.g. `stable/2025.2`."""
    constraints: Annotated[str, Field(min_length=1, max_length=2048)]
    """A constraints file (relative to the matrix file) or an http(s):// URL."""
    packages: Path | None = None
    """Only these names ("the packages we care about"), resolved against the branch's
    constraints; without it every pin is wanted."""
    platforms: tuple[Annotated[str, Field(pattern=r"^[A-Za-z0-9*?\[\]._-]+$")], ...] = ("*",)
    """Globs of the platforms that build this branch."""

    @property
    def remote(self) -> bool:
        return self.constraints.startswith(("http://", "https://"))


RUNNER_LABEL_RE = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"
RunnerLabel = Annotated[str, _grammar(RUNNER_LABEL_RE, "a CI runner label", 100)]


class RunnerSpec(Model):
    """Which CI runners build which platforms, and in which shard: the first entry
    whose glob matches a platform wins; unmatched platforms go one shard per arch."""

    platforms: Annotated[str, Field(pattern=r"^[A-Za-z0-9*?\[\]._-]+$", max_length=200)]
    """A glob over platform names."""
    labels: tuple[RunnerLabel, ...] = Field(min_length=1, max_length=20)
    """The runner labels (`runs-on`); one set per shard."""
    shard: Name | None = None
    """The shard's name; default: the platform's arch."""
    native: StrictBool = True
    """`false`: these runners emulate the platform's arch (the workflow sets up QEMU)."""
    budget_minutes: Annotated[int, Field(ge=1, le=10080)] | None = None
    """A shard expected to take longer is split into parts (`arm64-1`, `arm64-2`, ...) that
    divide its build items."""


class SkipSpec(Model):
    platform: str = "*"
    """A platform glob."""
    name: str
    """A normalized project name."""
    reason: str
    """Why, e.g. an upstream issue's URL."""


DEFAULT_PACKAGES: dict[Family, tuple[str, ...]] = {
    Family.DEB: (
        "libffi-dev",
        "libssl-dev",
        "libxml2-dev",
        "libxslt1-dev",
        "libyaml-dev",
        "libldap2-dev",
        "libsasl2-dev",
        "libmariadb-dev",
        "libpq-dev",
        "libvirt-dev",
        "libsystemd-dev",
        "pkg-config",
        "zlib1g-dev",
        "libjpeg-dev",
    ),
    Family.RPM: (
        "libffi-devel",
        "openssl-devel",
        "libxml2-devel",
        "libxslt-devel",
        "libyaml-devel",
        "openldap-devel",
        "cyrus-sasl-devel",
        "mariadb-connector-c-devel",
        "libpq-devel",
        "libvirt-devel",
        "systemd-devel",
        "pkgconf-pkg-config",
        "zlib-devel",
        "libjpeg-turbo-devel",
    ),
}


class Matrix(Model):
    version: Literal[1] = 1
    """The file format's version: `1`."""
    registry: RegistrySpec
    """Where builder images are pushed."""
    index: IndexSpec = IndexSpec()
    """The upstream index and the published one."""
    engines: tuple[EngineSpec, ...] = (EngineSpec(name="local"),)
    """Container engines; default: the local Docker engine with 2 slots."""
    builder: BuilderSpec = BuilderSpec()
    """Settings baked into every builder image."""
    packages: dict[Family, tuple[str, ...]] = Field(default_factory=lambda: dict(DEFAULT_PACKAGES))
    """System packages of every builder, per family (`deb`, `rpm`)."""
    distros: tuple[DistroSpec, ...] = Field(min_length=1)
    """Distro releases, each on its arches: the platforms."""
    skip: tuple[SkipSpec, ...] = ()
    """Per-platform exclusions, each with its reason."""
    from_source: tuple[ProjectName, ...] = ()
    """Projects built from their sdists even where the index has a wheel that fits (as pip's
    `--no-binary`): to have them built against this distro, or to check them."""
    overrides: tuple[OverrideSpec, ...] = ()
    """Per-package build settings; every entry that matches applies, in file order."""
    branches: tuple[BranchSpec, ...] = ()
    """Several constraints sources in one run (when no `-r` is given)."""
    runners: tuple[RunnerSpec, ...] = ()
    """CI runners for `plan --shards`; the first match wins, unmatched platforms go one shard
    per arch on its native hosted runner."""
    # Filled by the loader, never by the file: relative paths resolve here.
    source: SkipJsonSchema[Path] = Field(default=Path(), exclude=True)
    warnings: SkipJsonSchema[tuple[str, ...]] = Field(default=(), exclude=True)
    digest: SkipJsonSchema[str] = Field(
        default="", exclude=True
    )  # the file's sha256: a plan's matrix

    @field_validator("packages")
    @classmethod
    def _package_names(cls, value: dict[Family, tuple[str, ...]]) -> dict[Family, tuple[str, ...]]:
        for family, names in value.items():
            check_packages(family.value, names)
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> Matrix:
        _no_duplicates([e.name for e in self.engines], "engines", "engine name")
        _no_duplicates([f"{d.name}-{d.release}" for d in self.distros], "distros", "platform")
        _no_duplicates([b.name for b in self.branches], "branches", "branch name")
        labels: dict[str, tuple[str, ...]] = {}
        for rule in self.runners:
            if rule.shard and labels.setdefault(rule.shard, rule.labels) != rule.labels:
                raise ValueError(
                    f"runners: shard {rule.shard!r} is given two sets of labels "
                    f"({', '.join(labels[rule.shard])} and {', '.join(rule.labels)}); "
                    "a shard runs on one kind of runner"
                )
        return self

    def resolve(self, path: Path) -> Path:
        """A path from the file, relative to the file's folder."""
        return path if path.is_absolute() else (self.source.parent / path).resolve()


class DuplicateError(ValueError):
    """Carries the list and index so the loader can point at the line."""

    def __init__(self, field: str, index: int, what: str, value: str) -> None:
        super().__init__(f"duplicate {what} {value!r}")
        self.field = field
        self.index = index


def _no_duplicates(names: list[str], field: str, what: str) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise DuplicateError(field, i, what, name)
        seen.add(name)


def matrix_json_schema() -> dict[str, Any]:
    """The JSON Schema of the matrix file, as editors and the reference pages read it:
    the models' own, with the arch aliases the loader accepts."""
    schema = Matrix.model_json_schema(mode="validation")
    arches = schema["$defs"]["DistroSpec"]["properties"]["arches"]
    arches["items"] = {"anyOf": [arches["items"], {"enum": sorted(ARCH_ALIASES)}]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "orchestrate matrix (platforms.yaml)",
        "description": "Platforms, engines, builders and the wheel index of orchestrate.",
    }
