"""Failure classification from real log excerpts: category, first error line, hint."""

from __future__ import annotations

import time

import pytest

from orchestrator.jobs.failures import (
    EXIT_BUILD,
    EXIT_BUILD_DEPS,
    EXIT_METADATA,
    classify,
    classify_smoke,
    first_error_line,
)
from orchestrator.model import Category, Family

PYYAML_CYTHON3 = """\
+ /job/env/bin/python .../_in_process.py (build backend)
running egg_info
writing lib3/PyYAML.egg-info/PKG-INFO
Traceback (most recent call last):
  File "/opt/orchestrate/py3.11/lib/python3.11/site-packages/pyproject_hooks/_in_process.py", line 406, in <module>
    main()
  File "/job/env/lib/python3.11/site-packages/setuptools/_distutils/command/sdist.py", line 256, in add_defaults
    self._add_defaults_ext()
AttributeError: cython_sources
error: the build backend failed computing build requirements: Backend subprocess exited
"""

PYTHON_LDAP = """\
building '_ldap' extension
x86_64-linux-gnu-gcc -Wsign-compare -DNDEBUG -g -fwrapv -O2 -Wall -fPIC -IModules -c Modules/LDAPObject.c
In file included from Modules/LDAPObject.c:3:
Modules/common.h:15:10: fatal error: lber.h: No such file or directory
   15 | #include <lber.h>
compilation terminated.
error: command '/usr/bin/x86_64-linux-gnu-gcc' failed with exit code 1
"""

PSYCOPG2 = """\
running egg_info
Error: pg_config executable not found.

pg_config is required to build psycopg2 from source.
"""

GSSAPI = """\
/bin/sh: 1: krb5-config: not found
Traceback (most recent call last):
  File "<string>", line 109, in <module>
OSError: Could not find KRB5 config
"""

PKGCONFIG = """\
Package libvirt was not found in the pkg-config search path.
Perhaps you should add the directory containing `libvirt.pc'
"""

COMPILE = """\
src/foo.c:10:5: error: implicit declaration of function 'bar' [-Werror=implicit-function-declaration]
error: command '/usr/bin/gcc' failed with exit code 1
"""

NETWORK = """\
+ python -m pip download -d /job/deps --prefer-binary setuptools
WARNING: Retrying (Retry(total=4)) after connection broken by 'NewConnectionError(...: Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/setuptools/
ERROR: Could not find a version that satisfies the requirement setuptools (from versions: none)
ERROR: No matching distribution found for setuptools
"""

UNRESOLVABLE = """\
+ python -m pip download -d /job/deps --prefer-binary -c /job/build-constraints.txt setuptools>=70
ERROR: Cannot install setuptools>=70 because these package versions have conflicting dependencies.
ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/...
"""


def test_cython3_metadata_failure_quotes_the_exception() -> None:
    failure = classify(EXIT_METADATA, PYYAML_CYTHON3, Family.DEB)
    assert failure.category == Category.METADATA
    assert failure.first_line == "AttributeError: cython_sources"
    assert "Cython<3" in failure.hint
    assert not failure.category.retryable


@pytest.mark.parametrize(
    ("log", "family", "line", "package"),
    [
        (PYTHON_LDAP, Family.DEB, "missing header lber.h", "libldap-dev libsasl2-dev"),
        (PYTHON_LDAP, Family.RPM, "missing header lber.h", "openldap-devel cyrus-sasl-devel"),
        (PSYCOPG2, Family.DEB, "missing tool pg_config", "libpq-dev"),
        (GSSAPI, Family.DEB, "missing tool krb5-config", "libkrb5-dev"),
        (PKGCONFIG, Family.DEB, "missing pkg-config libvirt", "libvirt-dev"),
    ],
)
def test_missing_system_library_names_it_and_its_package(
    log: str, family: Family, line: str, package: str
) -> None:
    failure = classify(EXIT_BUILD, log, family)
    assert failure.category == Category.MISSING_SYSTEM_LIBRARY
    assert failure.first_line == line
    assert package in failure.hint


def test_a_plain_compile_error_is_compile_with_the_compilers_line() -> None:
    failure = classify(EXIT_BUILD, COMPILE, Family.DEB)
    assert failure.category == Category.COMPILE
    assert failure.first_line.startswith("src/foo.c:10:5: error: implicit declaration")


def test_network_faults_are_retried_and_resolution_failures_are_not() -> None:
    network = classify(EXIT_BUILD_DEPS, NETWORK, Family.DEB)
    assert network.category == Category.BUILD_DEPS
    assert network.category.retryable
    assert "Temporary failure in name resolution" in network.first_line
    stuck = classify(EXIT_BUILD_DEPS, UNRESOLVABLE, Family.DEB)
    assert stuck.category == Category.UNRESOLVABLE
    assert not stuck.category.retryable


def test_a_pip_failure_that_is_not_the_network_is_not_retried() -> None:
    log = "ERROR: Could not open requirements file: [Errno 2] No such file or directory\n"
    failure = classify(EXIT_BUILD_DEPS, log, Family.DEB)
    assert failure.category == Category.UNRESOLVABLE
    assert not failure.category.retryable
    assert failure.first_line.startswith("ERROR: Could not open requirements file")


def test_only_network_and_engine_categories_are_retryable() -> None:
    assert {c for c in Category if c.retryable} == {
        Category.SDIST_DOWNLOAD,
        Category.BUILD_DEPS,
        Category.ENGINE,
    }


def test_first_error_line_skips_pips_wrappers() -> None:
    log = "error: subprocess-exited-with-error\n  ╰─> [3 lines of output]\nValueError: bad\n"
    assert first_error_line(log) == "ValueError: bad"


# feedparser 5.2.1 on Python 3.11: setuptools 58 dropped use_2to3; pypa/build's wrapper
# line comes after the backend's own, and is not what a person should read.
FEEDPARSER = """\
* Getting build dependencies for wheel...
error in feedparser setup command: use_2to3 is invalid.

ERROR Backend subprocess exited when trying to invoke get_requires_for_build_wheel
"""

# Old Cython output (before 0.29.24) on Python 3.11, which moved longintrepr.h.
LONGINTREPR = """\
x86_64-linux-gnu-gcc -fPIC -I/job/env/include -I/usr/include/python3.11 -c src/_speedups.c
src/_speedups.c:198:12: fatal error: longintrepr.h: No such file or directory
  198 |   #include "longintrepr.h"
compilation terminated.
error: command '/usr/bin/x86_64-linux-gnu-gcc' failed with exit code 1
"""

OLD_IMPORTS = [
    "ImportError: cannot import name 'Callable' from 'collections' (/usr/lib/python3.11/"
    "collections/__init__.py)",
    "AttributeError: module 'collections' has no attribute 'MutableMapping'",
    "ModuleNotFoundError: No module named 'distutils'",
    '  File "/job/build/setup.py", line 12\n    print "hello"\n    ^\nSyntaxError: Missing '
    "parentheses in call to 'print'. Did you mean print(...)?",
]


def test_the_backend_line_is_shown_not_the_wrapper() -> None:
    failure = classify(EXIT_METADATA, FEEDPARSER, Family.DEB)
    assert failure.first_line == "error in feedparser setup command: use_2to3 is invalid."
    assert failure.category == Category.PYTHON_VERSION
    assert "Cython<3" not in failure.hint  # not the metadata hint: it points the wrong way


def test_a_header_the_interpreter_dropped_is_not_a_missing_package() -> None:
    failure = classify(EXIT_BUILD, LONGINTREPR, Family.DEB)
    assert failure.category == Category.PYTHON_VERSION
    assert "longintrepr.h" in failure.first_line
    assert "newer release" in failure.hint
    assert "Cython<3" in failure.hint
    assert "-dev" not in failure.hint
    # a real missing -dev header stays what it was
    assert classify(EXIT_BUILD, PYTHON_LDAP, Family.DEB).category == (
        Category.MISSING_SYSTEM_LIBRARY
    )


@pytest.mark.parametrize("line", OLD_IMPORTS)
def test_releases_older_than_the_python_have_their_own_category(line: str) -> None:
    for code in (EXIT_METADATA, EXIT_BUILD):
        failure = classify(code, f"running egg_info\n{line}\n", Family.DEB)
        assert failure.category == Category.PYTHON_VERSION, (code, line)
    # the Cython 3 failure keeps its own category and hint
    assert classify(EXIT_METADATA, PYYAML_CYTHON3, Family.DEB).category == Category.METADATA


def test_the_hint_names_the_oldest_release_that_fits_the_python() -> None:
    from orchestrator.jobs.failures import python_version_hint
    from orchestrator.plan.upstream import IndexFile, ProjectPage, oldest_supporting

    files = [
        ("feedparser-5.2.1.tar.gz", None),
        ("feedparser-5.2.1.zip", None),
        ("feedparser-6.0.0b1.tar.gz", ">=3.6"),  # a pre-release is never suggested
        ("feedparser-6.0.0-py3-none-any.whl", ">=3.6"),
        ("feedparser-6.0.11-py3-none-any.whl", ">=3.6"),
        ("feedparser-9.0-cp311-cp311-manylinux_2_17_x86_64.whl", None),  # by its tag
    ]
    page = ProjectPage.of(
        (
            IndexFile(
                filename=n, url=f"https://f/{n}", sha256=None, requires_python=rp, yanked=False
            )
            for n, rp in files
        ),
        "feedparser",
    )
    assert oldest_supporting(page, "3.11", "5.2.1") == "6.0.0"
    assert oldest_supporting(page, "3.11", "6.0.11") == "9.0"
    assert oldest_supporting(page, "3.12", "6.0.11") is None
    assert oldest_supporting(page, "3.11", "9.0") is None
    hint = python_version_hint("3.11", "feedparser", "6.0.0")
    assert "Python 3.11" in hint
    assert "feedparser==6.0.0" in hint


# krb5 0.5.1 and gssapi 1.8.3 on bookworm without libkrb5-dev: setup.py runs
# krb5-config while the backend works out its build requirements (job.py: exit 12).
KRB5_METADATA = """\
* Getting build dependencies for wheel...
/bin/sh: 1: krb5-config: not found
Traceback (most recent call last):
  File "/job/env/lib/python3.11/site-packages/pyproject_hooks/_in_process/_in_process.py", line 353
    main()
  File "<string>", line 52, in get_output
subprocess.CalledProcessError: Command 'krb5-config --cflags krb5' returned non-zero exit status 127.

ERROR Backend subprocess exited when trying to invoke get_requires_for_build_wheel
"""

# mysqlclient 2.2.4 without its client library: it tries its pkg-config names in turn.
MYSQLCLIENT_22 = """\
* Getting build dependencies for wheel...
Trying pkg-config --exists mysqlclient
Command 'pkg-config --exists mysqlclient' returned non-zero exit status 1.
Trying pkg-config --exists mariadb
Command 'pkg-config --exists mariadb' returned non-zero exit status 1.
Trying pkg-config --exists libmariadb
Command 'pkg-config --exists libmariadb' returned non-zero exit status 1.
Traceback (most recent call last):
  File "<string>", line 155, in get_config_posix
Exception: Can not find valid pkg-config name.
Specify MYSQLCLIENT_CFLAGS and MYSQLCLIENT_LDFLAGS env vars manually

ERROR Backend subprocess exited when trying to invoke get_requires_for_build_wheel
"""


@pytest.mark.parametrize(
    ("log", "package"),
    [(KRB5_METADATA, "libkrb5-dev"), (MYSQLCLIENT_22, "default-libmysqlclient-dev")],
)
def test_a_missing_piece_found_while_reading_metadata_is_a_missing_library(
    log: str, package: str
) -> None:
    """The piece wins over the phase it was found in, and the hint does not send the
    user after Cython."""
    failure = classify(EXIT_METADATA, log, Family.DEB)
    assert failure.category == Category.MISSING_SYSTEM_LIBRARY, failure
    assert package in failure.hint
    assert "Cython" not in failure.hint


def test_every_missing_piece_of_the_log_is_named_with_its_package() -> None:
    log = (
        "Modules/constants.h:7:10: fatal error: lber.h: No such file or directory\n"
        "Modules/sasl.c:2:10: fatal error: sasl/sasl.h: No such file or directory\n"
        "/usr/bin/ld: cannot find -lssl\n"
    )
    failure = classify(EXIT_BUILD, log, Family.DEB)
    assert failure.first_line == "missing header lber.h, header sasl/sasl.h, library ssl"
    assert "install libldap-dev libsasl2-dev libssl-dev in the builder" in failure.hint


@pytest.mark.parametrize(
    ("error", "category", "says"),
    [
        (
            "AttributeError: type object 'Callable' has no attribute '_abc_registry'",
            Category.PYTHON_VERSION,
            "predates",
        ),
        ("ModuleNotFoundError: No module named 'imp'", Category.PYTHON_VERSION, "predates"),
        (
            "ImportError: cannot import name 'getargspec' from 'inspect'",
            Category.PYTHON_VERSION,
            "predates",
        ),
        ("SyntaxError: invalid syntax (compat.py, line 3)", Category.PYTHON_VERSION, "predates"),
        (
            "ImportError: libpq.so.5: cannot open shared object file: No such file or directory",
            Category.SMOKE,
            "libpq.so.5 is not installed: add its package to overrides: runtime_packages",
        ),
        ("ModuleNotFoundError: No module named 'six'", Category.SMOKE, "see the log"),
        ("RuntimeError: the self-test failed", Category.SMOKE, "see the log"),
    ],
)
def test_a_smoke_failure_is_explained_by_its_error(
    error: str, category: Category, says: str
) -> None:
    failure = classify_smoke(error)
    assert failure.category == category
    assert says in failure.hint
    assert failure.first_line == error


@pytest.mark.parametrize(
    "unit",
    [
        "collections.Mapping ",
        "Package 'x' required by ",
        "a.so",
        "a-config",
        "pkg-config --exists a",
        "cannot import name 'x' from ",
    ],
)
def test_a_hostile_log_tail_is_classified_in_linear_time(unit: str) -> None:
    """256 KiB of one token repeated (the log tail a build may print): every pattern
    that reads logs stays linear (an unbounded `.*` or `\\S+` before a literal made
    these take 11 s to 6 minutes)."""
    log = (unit * (256 * 1024 // len(unit) + 1))[: 256 * 1024]
    started = time.monotonic()
    for code in (EXIT_METADATA, EXIT_BUILD, EXIT_BUILD_DEPS):
        classify(code, log, Family.DEB)
    classify_smoke(log)
    assert time.monotonic() - started < 2.0
