"""Job statuses, failure categories, and classifying a failed job from its log.

Pure: an exit code, the phase and the log's text go in; a category, the
first error line and a hint come out. Only network and engine faults are
worth retrying; everything else fails the same way the next time.
"""

from __future__ import annotations

import re
import sys
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
    r"|collections\.(?:Mutable)?(?:Mapping|Sequence|Set|Callable|Iterable)\b"
    r"[^\n]{0,200}?(?:Error|attribute)"
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
    (
        re.compile(r"Package '?([\w.+-]+)'?,? (?:required by [^\n]{0,300}?, )?(?:was )?not found"),
        "pkg-config",
    ),
    (re.compile(r"No package '([\w.+-]+)' found"), "pkg-config"),
    # mysqlclient >= 2.2 tries its pkg-config names in turn, then gives up with
    # "Can not find valid pkg-config name": the first name it tried is the one to have.
    (re.compile(r"pkg-config --exists ([\w.+-]+)'? returned non-zero"), "pkg-config"),
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
    # libldap2-dev is only a transitional name since bookworm (and noble); the
    # LDAP client headers' users (python-ldap) build their SASL binding too.
    "lber.h": ("libldap-dev libsasl2-dev", "openldap-devel cyrus-sasl-devel"),
    "ldap.h": ("libldap-dev libsasl2-dev", "openldap-devel cyrus-sasl-devel"),
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
    "libssl": ("libssl-dev", "openssl-devel"),
    "libcrypto": ("libssl-dev", "openssl-devel"),
    "libpq": ("libpq-dev", "libpq-devel"),
    "libz": ("zlib1g-dev", "zlib-devel"),
    "libyaml": ("libyaml-dev", "libyaml-devel"),
    "libxml2": ("libxml2-dev", "libxml2-devel"),
    "libxslt": ("libxslt1-dev", "libxslt-devel"),
    "libkrb5": ("libkrb5-dev", "krb5-devel"),
    "krb5-gssapi": ("libkrb5-dev", "krb5-devel"),
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
    "pkg-config": ("pkgconf", "pkgconf-pkg-config"),  # pkg-config: transitional since bookworm
}


def missing_piece(log: str) -> Missing | None:
    found = missing_pieces(log)
    return found[0] if found else None


def missing_pieces(log: str) -> list[Missing]:
    """Every missing piece the log names, in the order the log names them, once each."""
    found: dict[Missing, int] = {}
    for pattern, kind in MISSING:
        for match in pattern.finditer(log):
            piece = Missing(kind, match.group(1))
            found.setdefault(piece, match.start())
    return sorted(found, key=found.__getitem__)


def provider(missing: Missing, family: Family) -> str | None:
    """The package (or packages, space-separated) that provide the piece."""
    names = PROVIDERS.get(missing.name) or PROVIDERS.get(missing.name.removeprefix("lib"))
    if names is None and missing.kind == "library":
        names = PROVIDERS.get(f"lib{missing.name}")
    if names is None:
        return None
    return names[0] if family == Family.DEB else names[1]


def providers(pieces: list[Missing], family: Family) -> list[str]:
    """The packages that provide `pieces`, each named once, in order."""
    out: dict[str, None] = {}
    for piece in pieces:
        out.update(dict.fromkeys((provider(piece, family) or "").split()))
    return list(out)


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
    """The category of a job whose container exited `exit_code` with `log` as output.
    A missing system piece wins over the phase it was found in: a backend that fails
    while working out its build requirements (exit 12) for want of `krb5-config` is
    missing a library, not metadata."""
    if exit_code == EXIT_BUILD_DEPS:
        return _build_deps_failure(log)
    old = python_version_sign(log)
    if old is not None:
        return Failure(Category.PYTHON_VERSION, old, PYTHON_VERSION_HINT)
    missing = _missing_failure(log, family)
    if missing is not None:
        return missing
    if exit_code == EXIT_METADATA:
        cython = "an older Cython may help (`Cython<3` in a build constraint)"
        why = cython if "cython" in log.lower() else "see the log"
        return Failure(
            Category.METADATA,
            first_error_line(log),
            f"the build backend failed before building; {why}",
        )
    if exit_code == EXIT_SDIST:
        return Failure(Category.METADATA, first_error_line(log), "the sdist does not unpack")
    return Failure(Category.COMPILE, first_error_line(log), "see the log")


def _build_deps_failure(log: str) -> Failure:
    if NETWORK.search(log):  # only a network fault is worth another try
        return Failure(Category.BUILD_DEPS, _network_line(log), "a network fault: retried")
    found = UNRESOLVABLE.search(log)
    line = found.group(0) if found else first_error_line(log)
    return Failure(
        Category.UNRESOLVABLE,
        line[:300],
        "pin a build tool that fits with a build constraint (--build-constraint)",
    )


def _missing_failure(log: str, family: Family) -> Failure | None:
    """A header, pkg-config module, library or tool the build looked for and did not
    find, with every package that provides what the log shows missing."""
    pieces = missing_pieces(log)
    if not pieces:
        return None
    first = pieces[0]
    if first.name.rsplit("/", 1)[-1] in GONE_HEADERS:
        return Failure(
            Category.PYTHON_VERSION,
            f"missing header {first.name}: the interpreter no longer has it",
            "the C sources were generated for an older Python (e.g. by Cython < 0.29.24): "
            "pin a newer release of the project, or regenerate its C sources "
            "(`Cython<3` in a build constraint)",
        )
    packages = providers(pieces, family)
    hint = (
        f"install {' '.join(packages)} in the builder (matrix packages:, or overrides:)"
        if packages
        else "install the package that provides it in the builder (matrix packages:)"
    )
    named = ", ".join(f"{p.kind} {p.name}" for p in pieces[:3])
    return Failure(Category.MISSING_SYSTEM_LIBRARY, f"missing {named}", hint)


# Modules the standard library had and dropped (PEP 594 and earlier): a release that
# imports one predates the interpreter, as one that reaches for a moved name does.
REMOVED_STDLIB = frozenset({"distutils", "imp", "asynchat", "asyncore", "smtpd", "formatter"})
NO_SHARED_OBJECT = ": cannot open shared object file"
NO_STDLIB_NAME = re.compile(
    r"(?:cannot import name '\w+' from '([\w.]+)'|No module named '([\w.]+)')"
)


def classify_smoke(error: str) -> Failure:
    """A wheel that does not load, by what the error says: a shared object missing is
    the runtime list's; an AttributeError, a SyntaxError or a standard-library name
    that is not there is a release older than the platform's Python; else the log."""
    missing = _shared_object(error)
    if missing:
        hint = f"{missing} is not installed: add its package to overrides: runtime_packages"
        return Failure(Category.SMOKE, error, hint)
    if python_version_sign(error) or _older_than_python(error):
        return Failure(Category.PYTHON_VERSION, error, PYTHON_VERSION_HINT)
    return Failure(Category.SMOKE, error, "see the log: the wheel built but does not load")


def _shared_object(error: str) -> str:
    """The file name before the loader's "cannot open shared object file", found by
    position: a pattern with a run of non-spaces before it backtracks quadratically."""
    at = error.find(NO_SHARED_OBJECT)
    if at == -1:
        return ""
    words = error[max(0, at - 256) : at].split()
    return words[-1] if words else ""


def _older_than_python(error: str) -> bool:
    if re.search(r"\b(?:AttributeError|SyntaxError)\b", error):
        return True
    found = NO_STDLIB_NAME.search(error)
    if found is None:
        return False
    top = (found.group(1) or found.group(2)).split(".")[0]
    return top in sys.stdlib_module_names or top in REMOVED_STDLIB


def _network_line(log: str) -> str:
    found = NETWORK.search(log)
    if found is None:
        return first_error_line(log)
    start = log.rfind("\n", 0, found.start()) + 1
    end = log.find("\n", found.end())
    return log[start : end if end != -1 else None].strip()[:300]
