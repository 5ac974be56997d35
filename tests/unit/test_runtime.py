"""A wheel cache users can trust, the pure parts: ELF analysis of real shared
objects, resolution against a builder's runtime facts, the ABI check and the plan's
`rebuild`, build tags in the store, project pages, provenance statements, the smoke
test's verdict and its in-container check, and the matrix keys."""

from __future__ import annotations

import _ssl
import ctypes.util
import json
import os
import platform
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2

from orchestrator.config import load_matrix
from orchestrator.config.matrix import expand
from orchestrator.core.errors import ConfigError
from orchestrator.images.facts import RuntimeFacts, parse_runtime
from orchestrator.images.render import render
from orchestrator.images.sysdeps import base_dockerfile
from orchestrator.jobs.records import WheelRecord
from orchestrator.model import Action, JobStatus
from orchestrator.publish.index import publish
from orchestrator.publish.pages import project_html, project_json
from orchestrator.publish.provenance import PREDICATE_TYPE, statement
from orchestrator.store import Provenance, Store, with_build_tag
from orchestrator.trust.runtime import (
    abi_changes,
    analyse,
    extension_module,
    resolve,
    top_level,
    unresolved,
)
from orchestrator.trust.smoke import inline_smoke_command, inline_verdict, smoke_plan, verdict
from tests.conftest import REPO

from .test_config import VALID
from .test_plan import page, plan

Write = Callable[[str, str], Path]
AMD = "debian-bookworm-amd64"
SSL = Path(_ssl.__file__)  # a real extension module: links libssl, libcrypto and libc
LIBPQ = "libpq5"
FACTS = RuntimeFacts(
    "deb",
    {"3.11": "3.11.2"},
    {"libc6": "2.36-9+deb12u13", "libssl3": "3.0.17-1~deb12u2", LIBPQ: "15.18-0+deb12u1"},
    {
        "libc.so.6": ("/lib/x86_64-linux-gnu/libc.so.6", "libc6"),
        "libssl.so.3": ("/lib/x86_64-linux-gnu/libssl.so.3", "libssl3"),
        "libcrypto.so.3": ("/lib/x86_64-linux-gnu/libcrypto.so.3", "libssl3"),
        "libpq.so.5": ("/lib/x86_64-linux-gnu/libpq.so.5", LIBPQ),
    },
)


def wheel_with(folder: Path, members: dict[str, bytes], name: str = "demo") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-1.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
        archive.writestr(f"{name}-1.0.dist-info/METADATA", f"Name: {name}\nVersion: 1.0\n")
    return path


def test_elf_analysis_of_a_real_extension_module(tmp_path: Path) -> None:
    wheel = wheel_with(
        tmp_path,
        {
            "demo/_ssl.cpython-311-x86_64-linux-gnu.so": SSL.read_bytes(),
            "demo/__init__.py": b"",
            "demo/data.txt": b"\x7fELF?",
        },
    )
    elf = analyse(str(wheel))
    assert "libc.so.6" in elf.needed
    assert any(n.startswith("libssl.so") for n in elf.needed), elf.needed
    assert elf.needed["libc.so.6"] == ("demo/_ssl.cpython-311-x86_64-linux-gnu.so",)
    major, minor = (int(p) for p in elf.glibc.split(".")[:2])
    assert (major, minor) >= (2, 2)
    assert elf.extensions == ("demo._ssl",)
    assert elf.top_level == ("demo",)
    assert "demo/data.txt" in elf.unreadable  # ELF magic, then nothing an ELF reader accepts


def test_a_library_the_wheel_carries_is_not_external(tmp_path: Path) -> None:
    found = ctypes.util.find_library("ssl")
    assert found, "the host has no libssl"
    # This host's own library folders, whatever its arch (x86_64, aarch64...).
    triplet = sysconfig.get_config_var("MULTIARCH") or f"{platform.machine()}-linux-gnu"
    folders = (f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib64", "/usr/lib64", "/usr/lib")
    path = next((Path(d) / found for d in folders if (Path(d) / found).exists()), None)
    if path is None:
        pytest.skip(f"{found} is in none of {folders} on this host")
    alone = analyse(str(wheel_with(tmp_path / "a", {"demo/_ssl.so": SSL.read_bytes()})))
    bundled = analyse(
        str(
            wheel_with(
                tmp_path / "b",
                {
                    "demo/_ssl.so": SSL.read_bytes(),
                    f"demo.libs/{found}": path.read_bytes(),
                },
            )
        )
    )
    assert found in alone.external
    assert found not in bundled.external
    assert bundled.extensions == ("demo._ssl",)  # demo.libs/ is no package: not imported


def test_module_names_and_top_level() -> None:
    assert extension_module("pkg/sub/_x.cpython-311-x86_64-linux-gnu.so") == "pkg.sub._x"
    assert extension_module("x.data/platlib/fast.abi3.so") == "fast"
    assert extension_module("pkg.libs/libfoo-1a2b.so.1") is None
    assert extension_module("pkg/__init__.py") is None
    names = [
        "a/__init__.py",
        "b.py",
        "_c.cpython-311-x86_64-linux-gnu.so",
        "d-1.0.dist-info/RECORD",
        "e.data/purelib/e2/__init__.py",
        "not-ident/x.py",
        "README",
        "__pycache__/b.cpython-311.pyc",  # bytecode, not a module to import
    ]
    assert top_level(names) == ("_c", "a", "b", "e2")


def test_resolution_names_package_and_version_and_leaves_out_the_c_library(
    tmp_path: Path,
) -> None:
    elf = analyse(str(wheel_with(tmp_path, {"demo/_ssl.so": SSL.read_bytes()})))
    facts = RuntimeFacts(
        "deb",
        FACTS.python,
        FACTS.packages,
        {k: v for k, v in FACTS.libraries.items() if k != "libcrypto.so.3"},
    )
    runtime = resolve(elf, facts, "3.11", builder=facts)
    by_soname = {lib["soname"]: lib for lib in runtime.libraries}
    assert by_soname["libc.so.6"] == {
        "soname": "libc.so.6",
        "package": "libc6",
        "version": "2.36-9+deb12u13",
    }
    assert "libc6" not in runtime.packages  # glibc: compatible by symbol versions
    assert "libssl.so.3" in elf.external  # Python's _ssl links OpenSSL 3 here
    assert runtime.packages == {"libssl3": "3.0.17-1~deb12u2"}
    assert runtime.unresolved == ("libcrypto.so.3",)
    assert runtime.python == "3.11.2"
    assert runtime.job_packages == ()


def test_parse_runtime_refuses_what_is_not_a_probe() -> None:
    assert parse_runtime(json.dumps(FACTS.as_dict())) == FACTS
    with pytest.raises(ValueError, match="not a runtime probe"):
        parse_runtime('{"tags": {}}')


def recorded(**packages: str) -> dict[str, object]:
    return {"python": "3.11.2", "glibc": "2.14", "packages": packages, "job_packages": []}


def test_abi_changes_say_what_moved() -> None:
    assert abi_changes(recorded(libpq5="15.18-0+deb12u1"), FACTS, "3.11", same_image=True) == []
    moved = abi_changes(recorded(libpq5="15.17-0+deb12u1"), FACTS, "3.11", same_image=True)
    assert moved == ["libpq5 15.17-0+deb12u1 → 15.18-0+deb12u1"]
    python = {**recorded(), "python": "3.11.1"}
    assert abi_changes(python, FACTS, "3.11", same_image=True) == ["python 3.11.1 → 3.11.2"]
    gone = abi_changes(recorded(libfoo1="1.0"), FACTS, "3.11", same_image=True)
    assert gone == ["libfoo1 1.0 → not installed"]
    # From the job's system step: known to move only with the builder.
    step = {**recorded(libldap="2.5"), "job_packages": ["libldap"]}
    assert abi_changes(step, FACTS, "3.11", same_image=True) == []
    assert (
        "came from the job's system packages"
        in abi_changes(step, FACTS, "3.11", same_image=False)[0]
    )


def test_plan_says_rebuild_with_what_moved(write: Write) -> None:
    wheel = "psycopg2-2.9.12-cp311-cp311-linux_x86_64.whl"
    cached = {AMD: {("psycopg2", "2.9.12"): wheel}}
    pages = {"psycopg2": page("psycopg2-2.9.12.tar.gz")}
    why = ["libpq5 15.18-0+deb12u1 → 15.20-0+deb12u1"]
    asked: list[tuple[str, str, str]] = []

    def abi(platform: str, python: str, filename: str) -> list[str]:
        asked.append((platform, python, filename))
        return why if platform == AMD else []

    got = plan(write, "psycopg2==2.9.12\n", pages, cached, abi=abi)
    decision = got[("amd64", "psycopg2")]
    assert decision.action == Action.REBUILD
    assert decision.action.builds
    assert decision.reason == f"the builder moved since {wheel} was built: {why[0]}"
    assert decision.wheel == wheel
    assert decision.sdist == "psycopg2-2.9.12.tar.gz"
    assert (AMD, "3.11", wheel) in asked
    # Nothing to build it from: the cached file keeps being served, and the plan says so.
    gone = plan(
        write,
        "psycopg2==2.9.12\n",
        {"psycopg2": page("psycopg2-2.9.12-cp311-cp311-win_amd64.whl")},
        cached,
        abi=abi,
    )
    assert gone[("amd64", "psycopg2")].action == Action.CACHED
    assert why[0] in gone[("amd64", "psycopg2")].reason


def _add(store: Store, wheel: Path, rebuild: str = "", *, replace: bool = False) -> tuple[str, str]:
    with store.locked() as records:
        made = store.add(
            records,
            wheel,
            [AMD],
            Provenance(
                job="t",
                rebuild=rebuild,
                runtime=recorded(libpq5="15.20"),
                statement=lambda n, s: json.dumps([n, s]).encode(),
            ),
            replace=replace,
        )
    return made.filename, made.outcome


def test_rebuilds_with_new_bytes_get_the_next_build_tag(tmp_path: Path) -> None:
    store = Store(tmp_path / "root")
    first = wheel_with(tmp_path / "a", {"demo/x.py": b"1"})
    second = wheel_with(tmp_path / "b", {"demo/x.py": b"2"})
    third = wheel_with(tmp_path / "c", {"demo/x.py": b"3"})
    base = first.name
    assert _add(store, first) == (base, "added")
    assert _add(store, second) == (base, "mismatch")  # not a rebuild: never silently
    assert _add(store, second, "libpq5 moved") == (with_build_tag(base, 1), "rebuilt")
    assert _add(store, second, "again") == (with_build_tag(base, 1), "identical")
    assert _add(store, third, "libpq5 moved") == (with_build_tag(base, 2), "rebuilt")
    records = store.records()
    assert sorted(r.filename for r in records.values()) == sorted(
        [base, with_build_tag(base, 1), with_build_tag(base, 2)]
    )
    assert store.contents([AMD])[AMD] == {("demo", "1"): with_build_tag(base, 2)}
    tagged = records[f"{AMD}/{with_build_tag(base, 2)}"]
    assert tagged.rebuild == "libpq5 moved"
    assert tagged.attestation == with_build_tag(base, 2) + ".intoto.json"
    assert json.loads((store.dir / AMD / tagged.attestation).read_text()) == [
        with_build_tag(base, 2),
        tagged.sha256,
    ]
    assert (store.dir / AMD / base).read_bytes() == first.read_bytes()  # untouched
    assert with_build_tag(base, 1) == "demo-1.0-1-cp311-cp311-linux_x86_64.whl"
    assert _add(store, third, "moved", replace=True) == (base, "replaced")  # --replace


def test_project_pages_name_runtime_packages_and_provenance(tmp_path: Path) -> None:
    store = Store(tmp_path / "root")
    _add(store, wheel_with(tmp_path / "a", {"demo/x.py": b"1"}))
    [record] = store.records().values()
    text = project_html("demo", [record])
    assert "runtime packages: libpq5 15.20" in text
    assert f"provenance: {record.filename}.intoto.json" in text
    entry = json.loads(project_json("demo", [record]))["files"][0]
    assert entry["_runtime"]["packages"] == {"libpq5": "15.20"}
    assert entry["_provenance"] == record.filename + ".intoto.json"
    [result] = publish(store, [AMD])
    folder = store.root / AMD / "simple" / "demo"
    assert (folder / (record.filename + ".intoto.json")).is_file(), result


def test_provenance_is_an_in_toto_statement_with_slsa_provenance() -> None:
    record = WheelRecord(
        job=f"{AMD}/psycopg2==2.9.12",
        platform=AMD,
        python="3.11",
        name="psycopg2",
        version="2.9.12",
        status=JobStatus.BUILT,
        image="sha256:" + "a" * 64,
        image_pull="127.0.0.1:5000/o/builder@sha256:" + "b" * 64,
        sdist={
            "filename": "psycopg2-2.9.12.tar.gz",
            "url": "https://files/psycopg2-2.9.12.tar.gz",
            "sha256": "c" * 64,
        },
        source_sha256="c" * 64,
        build_requires=("setuptools==80.9.0",),
        runtime=recorded(libpq5="15.18-0+deb12u1"),
        smoke={"passed": True, "error": "", "packages": ["python3.11", "libpq5"]},
    )
    data = json.loads(statement(record, "psycopg2-2.9.12-1-cp311-cp311-linux_x86_64.whl", "d" * 64))
    assert data["_type"] == "https://in-toto.io/Statement/v1"
    assert data["predicateType"] == PREDICATE_TYPE
    assert data["subject"] == [
        {"name": "psycopg2-2.9.12-1-cp311-cp311-linux_x86_64.whl", "digest": {"sha256": "d" * 64}}
    ]
    # SLSA's own message accepts the predicate (unknown fields would be refused).
    json_format.ParseDict(data["predicate"], provenance_pb2.Provenance())
    deps = data["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert deps[0] == {
        "name": "psycopg2-2.9.12.tar.gz",
        "uri": "https://files/psycopg2-2.9.12.tar.gz",
        "digest": {"sha256": "c" * 64},
    }
    assert deps[1]["digest"] == {"sha256": "b" * 64}
    assert deps[1]["uri"] == "oci://127.0.0.1:5000/o/builder@sha256:" + "b" * 64
    assert {"name": "setuptools==80.9.0", "uri": "pkg:pypi/setuptools@80.9.0"} in deps
    byproducts = {b["name"]: b for b in data["predicate"]["runDetails"]["byproducts"]}
    assert byproducts["runtime"]["annotations"]["packages"] == {"libpq5": "15.18-0+deb12u1"}
    assert byproducts["smoke-test"]["annotations"]["passed"] is True


def test_smoke_plan_and_verdict() -> None:
    runtime = resolve(analyse(_ssl_wheel_bytes()), FACTS, "3.11")
    plan_ = smoke_plan("3.11", runtime, ("libfoo1", "python3.11"), "python -c 'import demo'")
    assert plan_.packages[0] == "python3.11"
    assert plan_.packages.count("python3.11") == 1
    assert plan_.packages[-1] == "libfoo1"
    failed = verdict(
        {
            "passed": False,
            "checks": [
                {
                    "module": "demo._x",
                    "status": "failed",
                    "error": "ImportError: libpq.so.5: cannot open",
                },
                {"module": "demo", "status": "skipped", "error": "needs six"},
            ],
        },
        1,
        timed_out=False,
        timeout=600,
    )
    assert not failed.passed
    assert failed.error == "demo._x: ImportError: libpq.so.5: cannot open"
    command = verdict(
        {
            "passed": False,
            "checks": [],
            "command": {"command": "pytest", "exit_code": 2, "error": "exit code 2"},
        },
        1,
        timed_out=False,
        timeout=600,
    )
    assert command.error == "test command `pytest`: exit code 2"
    assert (
        verdict(None, 137, timed_out=False, timeout=600).error
        == "the smoke test wrote no result (exit code 137)"
    )
    assert "timed out" in verdict(None, None, timed_out=True, timeout=600).error
    assert verdict({"passed": True, "checks": []}, 0, timed_out=False, timeout=600).passed


def _ssl_wheel_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("demo/_ssl.so", SSL.read_bytes())
    return buffer.getvalue()


def test_the_in_container_check_tells_a_missing_dependency_from_a_broken_wheel(
    tmp_path: Path,
) -> None:
    """smoke_check.py as the container runs it, here on the host's Python."""
    site = tmp_path / "w"
    wheel = wheel_with(
        site,
        {
            "good/__init__.py": b"import json\n",
            "needsdep/__init__.py": b"import orchestrate_not_installed_anywhere\n",
            "broken/__init__.py": b"from . import _missing_own_module\n",
        },
    )
    config = {
        "wheel": wheel.name,
        "extensions": ["good"],  # an extension at the top is a top-level name too
        "command": "python -c 'import good'",
        "top_level": ["broken", "good", "needsdep"],
        "timeout": 60,
    }
    (site / "smoke.json").write_text(json.dumps(config))
    check = REPO / "images" / "scripts" / "smoke_check.py"
    script = check.read_text().replace('Path("/smoke")', f"Path({str(site)!r})")
    (site / "check.py").write_text(script)
    done = subprocess.run(
        [sys.executable, str(site / "check.py")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": ""},
    )
    result = json.loads((site / "result.json").read_text())
    statuses = {c["module"]: (c["status"], c["error"]) for c in result["checks"]}
    assert [c["module"] for c in result["checks"]].count("good") == 1  # checked once
    assert statuses["good"] == ("ok", "")
    assert statuses["needsdep"] == ("skipped", "needs orchestrate_not_installed_anywhere")
    assert statuses["broken"][0] == "failed"
    assert done.returncode == 1
    assert result["passed"] is False
    assert "command" not in result  # no test command after a failed import


def test_a_pure_wheel_is_imported_from_its_zip_and_unpacked_only_when_that_fails(
    tmp_path: Path,
) -> None:
    """No extension module, no test command: zipimport, with nothing unpacked; a module
    that reads a file beside it (which a zip cannot give) is checked again unpacked."""
    for name, reads_a_file in (("plain", False), ("data", True)):
        site = tmp_path / name
        body = b"VALUE = 1\n"
        if reads_a_file:
            body = b"import os\nopen(os.path.join(os.path.dirname(__file__), 'v.txt')).read()\n"
        wheel = wheel_with(site, {f"{name}/__init__.py": body, f"{name}/v.txt": b"1"})
        config = {"wheel": wheel.name, "extensions": [], "top_level": [name], "timeout": 60}
        (site / "smoke.json").write_text(json.dumps(config))
        script = (REPO / "images" / "scripts" / "smoke_check.py").read_text()
        (site / "check.py").write_text(script.replace('Path("/smoke")', f"Path({str(site)!r})"))
        done = subprocess.run(
            [sys.executable, "-S", str(site / "check.py")],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PYTHONPATH": ""},
        )
        result = json.loads((site / "result.json").read_text())
        assert (done.returncode, result["passed"]) == (0, True), done.stdout + done.stderr
        assert result["checks"] == [{"module": name, "status": "ok", "error": ""}]
        assert (site / "site").is_dir() is reads_a_file, done.stdout
        assert ("checking again unpacked" in done.stdout) is reads_a_file


def test_smoke_dockerfile_and_apt_sources_reach_every_image(write: Write) -> None:
    line = "deb http://deb.debian.org/debian-security bookworm-security main"
    text = base_dockerfile("orchestrate-base:x", "deb", ("python3.11", "libpq5"), (line,))
    assert text.startswith("FROM orchestrate-base:x\n")
    assert f"echo '{line}' >> /etc/apt/sources.list.d/orchestrate.list" in text
    assert "apt-get install -y -q --no-install-recommends python3.11 libpq5" in text
    matrix = load_matrix(
        write(
            "m.yaml",
            (REPO / "examples" / "local.yaml")
            .read_text()
            .replace('    python: ["3.11"]', f'    apt_sources: ["{line}"]\n    python: ["3.11"]'),
        )
    )
    platform = expand(matrix)[0]
    assert platform.apt_sources == (line,)
    dockerfile = render(platform, matrix).dockerfile
    assert dockerfile.index(line) < dockerfile.index("apt-get update")


@pytest.mark.parametrize(
    ("distro", "line", "needle"),
    [
        ("debian", "deb http://x/ bookworm main'; rm -rf /", "not a one-line apt source"),
        ("debian", "deb-src http://x/ bookworm main", "not a one-line apt source"),
        ("centos", "deb http://x/ bookworm main", "deb family only"),
    ],
)
def test_bad_apt_sources_are_refused_with_the_line(
    write: Write, distro: str, line: str, needle: str
) -> None:
    arches = "    arches: [x86_64, aarch64]"
    text = VALID.replace(arches, f"{arches}\n    apt_sources: [{json.dumps(line)}]", 1)
    if distro == "centos":
        text = text.replace("family: deb", "family: rpm", 1)
    with pytest.raises(ConfigError, match=needle):
        load_matrix(write("m.yaml", text))


def test_override_smoke_settings(write: Write) -> None:
    from orchestrator.plan.overrides import Overrides

    matrix = load_matrix(
        write(
            "m.yaml",
            VALID
            + """overrides:
  - name: libvirt-python
    test_command: python -c "import libvirt; print(libvirt.getVersion())"
    runtime_packages: {deb: [libvirt-daemon], rpm: [libvirt-daemon]}
  - name: pyzmq
    smoke: false
""",
        )
    )
    platform = expand(matrix)[0]
    extras = Overrides(matrix.overrides).extras(platform, "libvirt-python", "12.6.0")
    assert extras.test_command == 'python -c "import libvirt; print(libvirt.getVersion())"'
    assert extras.runtime_packages == ("libvirt-daemon",)
    assert extras.smoke
    assert not Overrides(matrix.overrides).extras(platform, "pyzmq", "1").smoke
    with pytest.raises(ConfigError, match="runtime_packages"):
        load_matrix(
            write(
                "bad.yaml",
                VALID + "overrides:\n  - name: x\n    runtime_packages: {deb: ['a;b']}\n",
            )
        )


def test_the_build_containers_check_names_what_the_host_would_and_lists_every_load(
    tmp_path: Path,
) -> None:
    """smoke_check.py --inline finds the wheel in the build's out folder, checks the
    modules the host's analysis names, and lists what it loaded; the host takes only a
    pass whose every load belongs to the wheel's runtime packages."""
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    wheel = wheel_with(
        out,
        {
            "demo/__init__.py": b"import _ctypes\n",
            "tool.py": b"X = 1\n",
            "__pycache__/x.pyc": b"",
            "demo-1.0.data/scripts/run": b"#!/bin/sh\n",
        },
    )
    script = (REPO / "images" / "scripts" / "smoke_check.py").read_text()
    script = script.replace('Path("/job/out")', f"Path({str(out)!r})")
    (tmp_path / "check.py").write_text(
        script.replace('"/tmp/orchestrate-smoke"', repr(str(scratch)))
    )
    command = {"command": "python -c 'import tool'", "timeout": 60}
    (tmp_path / "smoke.json").write_text(json.dumps(command))  # as inline_smoke_files puts it
    started = f"{time.time():.3f}"
    done = subprocess.run(
        [sys.executable, "-S", str(tmp_path / "check.py"), "--inline", started],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": ""},
    )
    said = json.loads((out / "smoke.json").read_text())
    assert done.returncode == 0, done.stdout + done.stderr
    assert said["passed"] is True
    runtime = unresolved(analyse(str(wheel)), "3.11")
    assert sorted(c["module"] for c in said["checks"]) == sorted(runtime.top_level)
    assert runtime.top_level == ("demo", "tool")
    assert 0 <= said["seconds"] < 60
    assert not list(out.glob("site*")), "the wheel is unpacked outside the out folder"
    loaded = said["loaded"]
    plan = smoke_plan("3.11", runtime)
    taken = inline_verdict(said, runtime, plan, loaded)
    assert taken is not None
    assert taken.command == {"command": command["command"], "exit_code": 0, "error": ""}
    failing = {**said, "passed": False, "command": {**said["command"], "exit_code": 1}}
    assert inline_verdict(failing, runtime, plan, loaded) is None
    assert any("_ctypes" in p for p in loaded), loaded  # a stdlib extension, from lib-dynload
    assert inline_verdict(said, runtime, plan, loaded[1:]) is None
    merged = [p.removeprefix("/usr") if p.startswith("/usr/lib/") else p for p in loaded]
    assert inline_verdict(said, runtime, plan, merged) is not None  # dpkg's /lib, merged /usr
    missing = {**said, "checks": [c for c in said["checks"] if c["module"] != "tool"]}
    assert inline_verdict(missing, runtime, plan, loaded) is None  # a module not checked
    assert inline_verdict({**said, "passed": False}, runtime, plan, loaded) is None
    assert inline_verdict({"passed": True}, runtime, plan, loaded) is None  # no load list
    assert inline_smoke_command(("python", "job.py", "build"), "3.11")[4:] == (
        "/usr/bin/python3.11",
        "python",
        "job.py",
        "build",
    )
