"""Job statuses, failure categories, and classifying a failed job from its log.

Pure: an exit code, the phase and the log's text go in; a category, the
first error line and a hint come out. Only network and engine faults are
worth retrying; everything else fails the same way the next time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrator.model import Category, Family

# Exit codes of images/scripts/job.py (see its docstring).
EXIT_SDIST = 10
EXIT_BUILD_DEPS = 11
EXIT_METADATA = 12
EXIT_NEEDS = 13  # the build phase needs dynamic build requirements: fetch, build again
EXIT_BUILD = 20


@dataclass(frozen=True)
class Failure:
    category: Category
    first_line: str  # the first line of the log that says what went wrong
    hint: str = ""


NETWORK = re.compile(
    r"(Max retries exceeded|ConnectionError|Connection (reset|refused|aborted)|Read timed out"
    r"|Temporary failure in name resolution|Network is unreachable|ProtocolError"
    r"|HTTP error 5\d\d|503 Service|RemoteDisconnected|IncompleteRead|SSLError)",
)
UNRESOLVABLE = re.compile(
    r"(No matching distribution found for .*|Could not find a version that satisfies .*"
    r"|ResolutionImpossible.*|conflicting dependencies.*)"
)
ERROR_LINE = re.compile(
    r"(.*: (?:fatal )?error: .*|fatal error:.*|error:.*|Error:.*|ERROR:.*|error in .*: .*"
    r"|Traceback \(most recent call last\)|.*Exception:.*|.*Error: .*|.*not found.*)"
)
_NOISE = re.compile(
    r"(error: subprocess-exited-with-error|ERROR: Failed building wheel|note: This error"
    r"|Backend subprocess exited when trying to invoke"  # pypa/build's wrapper, not the cause
    r"|error: metadata-generation-failed|ERROR: Could not build wheels|╰─>|^\s*$)"
)


# Headers CPython no longer installs: old generated C (Cython < 0.29.24 includes
# longintrepr.h, which 3.11 moved into cpython/) asks for them. No -dev package has
# them, so the fix is a newer release of the project, or regenerating its C sources.
GONE_HEADERS = frozenset({"longintrepr.h", "eval.h", "pyfpe.h"})
# The signs of a release older than the interpreter that builds or imports it.
OLDER_THAN_PYTHON = re.compile(
    r"(cannot import name '\w+' from 'collections'"
    r"|module 'collections' has no attribute '\w+'"
    r"|collections\.(?:Mutable)?(?:Mapping|Sequence|Set|Callable|Iterable)\b.*(?:Error|attribute)"
    r"|use_2to3 is invalid"
    r"|No module named '(?:distutils|imp|asynchat|asyncore|smtpd)'"
    r"|module 'inspect' has no attribute 'getargspec'"
    r"|has no member named '(?:ob_digit|f_lasti|f_back|f_code|tp_print)'"
    r"|PyFrameObject|_PyUnicode_get_wstr_length|PyUnicode_AS_UNICODE"
    r"|SyntaxError: .*"
    r"|invalid syntax)"
)


def python_version_sign(log: str) -> str | None:
    """The line that shows a release older than the builder's Python, if one does."""
    found = OLDER_THAN_PYTHON.search(log)
    if found is None:
        return None
    start = log.rfind("\n", 0, found.start()) + 1
    end = log.find("\n", found.end())
    return log[start : end if end != -1 else None].strip()[:300]


PYTHON_VERSION_HINT = (
    "this release predates the builder's Python; pin a newer release of the project "
    "(or build this branch on an older distro)"
)


def python_version_hint(python: str, project: str, newer: str | None) -> str:
    if newer is None:
        return (
            f"this release predates Python {python}, the platform's; no newer release of "
            f"{project} says it supports {python}: build this branch on an older distro"
        )
    return (
        f"this release predates Python {python}, the platform's; the oldest release of "
        f"{project} that says it supports {python} is {newer}: pin {project}=={newer}, or "
        "build this branch on an older distro"
    )


@dataclass(frozen=True)
class Missing:
    """A system header, pkg-config module, library or tool the build looked for."""

    kind: str  # header | pkg-config | library | tool
    name: str


MISSING = (
    (re.compile(r"fatal error: ([\w./+-]+\.h(?:pp)?): No such file or directory"), "header"),
    (re.compile(r"Package '?([\w.+-]+)'?,? (?:required by .*, )?(?:was )?not found"), "pkg-config"),
    (re.compile(r"No package '([\w.+-]+)' found"), "pkg-config"),
    (re.compile(r"ld(?:\.\w+)?: cannot find -l([\w.+-]+)"), "library"),
    (
        re.compile(r"(?:^|\s)([\w.+-]+-config)(?:: not found| executable not found|: command not)"),
        "tool",
    ),
    (re.compile(r"Error: (pg_config) executable not found"), "tool"),
    (
        re.compile(r"(mysql_config|mariadb_config|krb5-config|xslt-config|xml2-config) not found"),
        "tool",
    ),
)

# Which distro package provides a well-known missing piece: (deb, rpm). The
# builder's own package database knows only installed packages, so the
# common cases of OpenStack's compiled sdists are named here (bindep's job
# in OpenStack); anything else gets the generic hint.
PROVIDERS: dict[str, tuple[str, str]] = {
    "lber.h": ("libldap2-dev", "openldap-devel"),
    "ldap.h": ("libldap2-dev", "openldap-devel"),
    "sasl/sasl.h": ("libsasl2-dev", "cyrus-sasl-devel"),
    "krb5-config": ("libkrb5-dev", "krb5-devel"),
    "krb5.h": ("libkrb5-dev", "krb5-devel"),
    "gssapi/gssapi.h": ("libkrb5-dev", "krb5-devel"),
    "pg_config": ("libpq-dev", "libpq-devel"),
    "libpq-fe.h": ("libpq-dev", "libpq-devel"),
    "libvirt": ("libvirt-dev", "libvirt-devel"),
    "libvirt/libvirt.h": ("libvirt-dev", "libvirt-devel"),
    "libsystemd": ("libsystemd-dev", "systemd-devel"),
    "systemd/sd-daemon.h": ("libsystemd-dev", "systemd-devel"),
    "systemd/sd-journal.h": ("libsystemd-dev", "systemd-devel"),
    "ffi.h": ("libffi-dev", "libffi-devel"),
    "libffi": ("libffi-dev", "libffi-devel"),
    "openssl/ssl.h": ("libssl-dev", "openssl-devel"),
    "openssl/opensslv.h": ("libssl-dev", "openssl-devel"),
    "yaml.h": ("libyaml-dev", "libyaml-devel"),
    "libxml/xmlversion.h": ("libxml2-dev", "libxml2-devel"),
    "xml2-config": ("libxml2-dev", "libxml2-devel"),
    "xslt-config": ("libxslt1-dev", "libxslt-devel"),
    "mysql_config": ("default-libmysqlclient-dev", "mariadb-connector-c-devel"),
    "mariadb_config": ("libmariadb-dev", "mariadb-connector-c-devel"),
    "mysql.h": ("default-libmysqlclient-dev", "mariadb-connector-c-devel"),
    "mysqlclient": ("default-libmysqlclient-dev", "mariadb-connector-c-devel"),
    "zlib.h": ("zlib1g-dev", "zlib-devel"),
    "jpeglib.h": ("libjpeg-dev", "libjpeg-turbo-devel"),
    "Python.h": ("python3-dev", "python3-devel"),
    "pkg-config": ("pkg-config", "pkgconf-pkg-config"),
}


def missing_piece(log: str) -> Missing | None:
    for pattern, kind in MISSING:
        found = pattern.search(log)
        if found:
            return Missing(kind, found.group(1))
    return None


def provider(missing: Missing, family: Family) -> str | None:
    names = PROVIDERS.get(missing.name) or PROVIDERS.get(missing.name.removeprefix("lib"))
    if names is None and missing.kind == "library":
        names = PROVIDERS.get(f"lib{missing.name}")
    if names is None:
        return None
    return names[0] if family == Family.DEB else names[1]


def first_error_line(log: str) -> str:
    """The first line that reads like an error, skipping pip's wrappers; for a Python
    traceback, the exception it ends with (what a person would quote)."""
    lines = log.splitlines()
    for number, line in enumerate(lines):
        text = line.strip()
        if text.startswith("Traceback (most recent call last)"):
            return _exception_after(lines[number + 1 :]) or text
        if ERROR_LINE.match(text) and not _NOISE.search(text):
            return text[:300]
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _exception_after(lines: list[str]) -> str | None:
    for line in lines:
        if line and not line[0].isspace():
            return line.strip()[:300]
    return None


def classify(exit_code: int | None, log: str, family: Family) -> Failure:
    """The category of a job whose container exited `exit_code` with `log` as output."""
    if exit_code == EXIT_BUILD_DEPS:
        if NETWORK.search(log):  # only a network fault is worth another try
            return Failure(Category.BUILD_DEPS, _network_line(log), "a network fault: retried")
        found = UNRESOLVABLE.search(log)
        line = found.group(0) if found else first_error_line(log)
        return Failure(
            Category.UNRESOLVABLE,
            line[:300],
            "pin a build tool that fits with a build constraint (--build-constraint)",
        )
    old = python_version_sign(log)
    if old is not None:
        return Failure(Category.PYTHON_VERSION, old, PYTHON_VERSION_HINT)
    if exit_code == EXIT_METADATA:
        return Failure(
            Category.METADATA,
            first_error_line(log),
            "the build backend failed before building; an older build tool may help "
            "(e.g. `Cython<3` in a build constraint)",
        )
    if exit_code == EXIT_SDIST:
        return Failure(Category.METADATA, first_error_line(log), "the sdist does not unpack")
    missing = missing_piece(log)
    if missing is not None and missing.name.rsplit("/", 1)[-1] in GONE_HEADERS:
        return Failure(
            Category.PYTHON_VERSION,
            f"missing header {missing.name}: the interpreter no longer has it",
            "the C sources were generated for an older Python (e.g. by Cython < 0.29.24): "
            "pin a newer release of the project, or regenerate its C sources "
            "(`Cython<3` in a build constraint)",
        )
    if missing is not None:
        package = provider(missing, family)
        hint = (
            f"install {package} in the builder (matrix packages:)"
            if package
            else "install the package that provides it in the builder (matrix packages:)"
        )
        return Failure(
            Category.MISSING_SYSTEM_LIBRARY, f"missing {missing.kind} {missing.name}", hint
        )
    return Failure(Category.COMPILE, first_error_line(log), "see the log")


def _network_line(log: str) -> str:
    found = NETWORK.search(log)
    if found is None:
        return first_error_line(log)
    start = log.rfind("\n", 0, found.start()) + 1
    end = log.find("\n", found.end())
    return log[start : end if end != -1 else None].strip()[:300]
