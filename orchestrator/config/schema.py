"""The matrix file's schema: frozen, typed, strict.

Closed sets (arch, package family) are enums. Every model forbids unknown
keys; the loader turns pydantic's errors into file:line messages with a
did-you-mean. Nothing after loading sees a raw dict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from orchestrator.config.fields import (
    GlibcVersion,
    Host,
    ImageRef,
    Model,
    Name,
    NoProxy,
    ProjectName,
    PythonVersion,
    Url,
    check_packages,
    grammar,
    no_duplicates,
)
from orchestrator.config.overrides import OverrideSpec
from orchestrator.model import ARCH_ALIASES, Arch, EngineKind, Family


def _arch_alias(value: Any) -> Any:
    return ARCH_ALIASES.get(value, value) if isinstance(value, str) else value


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
    updates: StrictBool = True
    """Also read the suite's `-updates` and `-security` pockets (security from
    `<mirror>-security` when the mirror is Debian's `.../debian`), as Debian's and
    Ubuntu's own images do, so builders get security fixes and refreshes pick them up.
    Never for `sid`, `unstable` or `experimental`, which have none."""

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


@dataclass(frozen=True, kw_only=True)
class UpstreamIndex:
    """The index the plan reads (PyPI or a mirror), and how it is asked."""

    url: str
    cache_ttl: int  # seconds an answer is reused without asking again
    concurrency: int  # parallel requests


@dataclass(frozen=True, kw_only=True)
class PublishedIndex:
    """Our index: where orchestrate publishes, and how many releases it keeps."""

    root: Path
    keep_releases: int


class IndexSpec(Model):
    """Two indexes: the upstream one the plan reads (`upstream`, `cache_ttl`,
    `concurrency`) and ours, which orchestrate publishes (`root`, `keep_releases`)."""

    # In the code each side is its own value: `upstream_index` and `published`.

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

    @property
    def upstream_index(self) -> UpstreamIndex:
        return UpstreamIndex(
            url=self.upstream, cache_ttl=self.cache_ttl, concurrency=self.concurrency
        )

    @property
    def published(self) -> PublishedIndex:
        return PublishedIndex(root=self.root, keep_releases=self.keep_releases)


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
    native_packages: StrictBool = True
    """An emulated Debian builder on a bootstrapped base gets its packages from the
    engine's own apt and dpkg, and its tool venvs and trust store from a native
    container; only maintainer scripts run under emulation. False makes all of it
    under emulation, as a native builder is made."""

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


APT_LINE_RE = (
    r"^deb (\[[A-Za-z0-9=,._/ -]+\] )?https?://[A-Za-z0-9._~:/%@+-]+( [A-Za-z0-9._/-]+){2,20}$"
)


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
RunnerLabel = Annotated[str, grammar(RUNNER_LABEL_RE, "a CI runner label", 100)]


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
        no_duplicates([e.name for e in self.engines], "engines", "engine name")
        no_duplicates([f"{d.name}-{d.release}" for d in self.distros], "distros", "platform")
        no_duplicates([b.name for b in self.branches], "branches", "branch name")
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
