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

from orchestrator.model import ARCH_ALIASES, Arch, EngineKind, Family

NAME_RE = r"^[a-z0-9][a-z0-9._-]*$"


class Model(BaseModel):
    # Lax mode so YAML lists become tuples and strings become paths; the
    # fields where YAML's own typing matters use Strict* types instead.
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    suite: Name
    mirror: Url = "http://deb.debian.org/debian"
    variant: Literal["minbase", "buildd"] = "minbase"

    @field_validator("mirror")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.match(r"^https?://", value):
            raise ValueError("mirror must be an http:// or https:// URL")
        return value.rstrip("/")


class Tls(Model):
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    verify: StrictBool = True


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
    url: str = "unix:///var/run/docker.sock"
    slots: Annotated[StrictInt, Field(ge=1, le=256)] = 2
    tls: Tls | None = None
    # Read from the engine's version answer when not given.
    kind: EngineKind | None = None
    # Soft = hard limit per name for every container; None: the kind's default.
    ulimits: dict[UlimitName, Annotated[StrictInt, Field(ge=0, le=2**31)]] | None = None

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not re.match(r"^(unix|tcp|ssh)://.+", value):
            raise ValueError("engine url must start with unix://, tcp:// or ssh://")
        return value


class RegistrySpec(Model):
    url: Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+(:\d+)?$")]
    repository: Annotated[str, Field(pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$")]
    insecure: StrictBool = False


class IndexSpec(Model):
    upstream: str = "https://pypi.org/simple/"
    root: Path = Path("wheelhouse")
    cache_ttl: Annotated[StrictInt, Field(ge=0)] = 600
    concurrency: Annotated[StrictInt, Field(ge=1, le=128)] = 32
    keep_releases: Annotated[StrictInt, Field(ge=1, le=100)] = 3

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
    extra_index_urls: tuple[Url, ...] = ()
    trusted_hosts: tuple[Host, ...] = ()
    timeout: Annotated[StrictInt, Field(ge=1)] = 60


class Proxy(Model):
    http: Url | None = None
    https: Url | None = None
    no_proxy: NoProxy | None = None

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
    pip: PipSettings = PipSettings()
    proxy: Proxy = Proxy()
    user: Name = "builder"
    job_timeout: Annotated[StrictInt, Field(ge=10)] = 3600
    # A constraints file for build tools (e.g. `Cython<3`), relative to the matrix file.
    build_constraints: Path | None = None
    # Emulated jobs compile with the builder's native cross compiler, except for
    # the projects listed here (normalized names), which compile under emulation.
    native_compiler: StrictBool = True
    native_compiler_except: tuple[ProjectName, ...] = ()

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
    release: Name
    family: Family
    base: ImageRef | Bootstrap
    python: tuple[PythonVersion, ...] = Field(min_length=1)
    glibc: GlibcVersion
    arches: tuple[Arch, ...] = Field(min_length=1)
    packages: tuple[str, ...] = ()
    # Extra apt lines (deb family), e.g. the security or backports suite: builders,
    # job system steps and smoke-test images all install from them.
    apt_sources: tuple[str, ...] = ()

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
    rpm: tuple[str, ...] = ()

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
    platforms: Annotated[str, Field(pattern=r"^[A-Za-z0-9*?\[\]._-]+$", max_length=200)] = "*"
    versions: str = ""  # a PEP 440 specifier, e.g. ">=3,<4"; empty: every version
    packages: OverridePackages = OverridePackages()
    bindep: Path | None = None  # a bindep.txt, relative to the matrix file
    bindep_profiles: tuple[Name, ...] = ("default", "compile")
    sdist_bindep: StrictBool = True  # use the sdist's own bindep.txt when it ships one
    env: dict[str, str] = Field(default_factory=dict)
    build_constraints: tuple[str, ...] = ()  # requirement lines, e.g. "Cython<3"
    pip_options: tuple[str, ...] = ()  # for the fetch phase's pip, e.g. "--pre"
    timeout: Annotated[StrictInt, Field(ge=10)] | None = None
    skip: Annotated[str, Field(min_length=1, max_length=500)] | None = None  # the reason
    # The smoke test: a command run after the imports (like cibuildwheel's
    # test-command), with `python` on PATH and the wheel importable; runtime packages
    # the ELF analysis cannot see (libraries loaded with dlopen or ctypes); or none.
    test_command: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    runtime_packages: OverridePackages = OverridePackages()
    smoke: StrictBool = True

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
    # A constraints file (relative to the matrix file) or an http(s):// URL.
    constraints: Annotated[str, Field(min_length=1, max_length=2048)]
    # A plain requirements list ("the packages we care about"), names possibly unpinned,
    # resolved against this branch's constraints; without it every pin is wanted.
    packages: Path | None = None
    platforms: tuple[Annotated[str, Field(pattern=r"^[A-Za-z0-9*?\[\]._-]+$")], ...] = ("*",)

    @property
    def remote(self) -> bool:
        return self.constraints.startswith(("http://", "https://"))


RUNNER_LABEL_RE = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"
RunnerLabel = Annotated[str, _grammar(RUNNER_LABEL_RE, "a CI runner label", 100)]


class RunnerSpec(Model):
    """Which CI runners build which platforms, and in which shard: the first entry
    whose glob matches a platform wins; unmatched platforms go one shard per arch."""

    platforms: Annotated[str, Field(pattern=r"^[A-Za-z0-9*?\[\]._-]+$", max_length=200)]
    labels: tuple[RunnerLabel, ...] = Field(min_length=1, max_length=20)
    shard: Name | None = None  # default: the arch of the platform
    native: StrictBool = True  # False: these runners emulate the platform's arch (QEMU)
    # A shard expected to take longer is split across several runners of this rule
    # (SHARD-1, SHARD-2, ...), each under the budget where the jobs allow it.
    budget_minutes: Annotated[int, Field(ge=1, le=10080)] | None = None


class SkipSpec(Model):
    platform: str = "*"
    name: str
    reason: str


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
    registry: RegistrySpec
    index: IndexSpec = IndexSpec()
    engines: tuple[EngineSpec, ...] = (EngineSpec(name="local"),)
    builder: BuilderSpec = BuilderSpec()
    packages: dict[Family, tuple[str, ...]] = Field(default_factory=lambda: dict(DEFAULT_PACKAGES))
    distros: tuple[DistroSpec, ...] = Field(min_length=1)
    skip: tuple[SkipSpec, ...] = ()
    # Projects built from their sdists even where the index has a wheel that fits, as
    # pip's --no-binary does: to have them built against this distro, or to check them.
    from_source: tuple[ProjectName, ...] = ()
    overrides: tuple[OverrideSpec, ...] = ()
    branches: tuple[BranchSpec, ...] = ()
    runners: tuple[RunnerSpec, ...] = ()
    # Filled by the loader, never by the file: relative paths resolve here.
    source: Path = Field(default=Path(), exclude=True)
    warnings: tuple[str, ...] = Field(default=(), exclude=True)
    digest: str = Field(default="", exclude=True)  # the file's sha256: a plan's matrix

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
