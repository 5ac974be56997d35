"""Per-package build settings (`overrides:` in the matrix), like fromager's
per-package settings: extra system packages, environment, constraints, timeouts
and the smoke test, for one project narrowed by platform and version."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import Field, StrictBool, StrictInt, ValidationInfo, field_validator

from orchestrator.config.fields import Model, Name, ProjectName, check_packages, parses
from orchestrator.model import Family

ENV_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
# Set by orchestrate itself for every job: an override may not change them.
RESERVED_ENV = ("ORCHESTRATE_", "SOURCE_DATE_EPOCH", "PYTHONHASHSEED", "PATH", "HOME")


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
        parses(SpecifierSet, InvalidSpecifier, value, "a version specifier (e.g. '>=3,<4')")
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
            parses(Requirement, InvalidRequirement, line, "a requirement (e.g. 'Cython<3')")
        return value

    @field_validator("pip_options")
    @classmethod
    def _pip_options(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for option in value:
            if not option.startswith("-") or any(c in option for c in "\n\r\0"):
                raise ValueError(f"{option!r} is not a pip option (one per item, e.g. '--pre')")
        return value
