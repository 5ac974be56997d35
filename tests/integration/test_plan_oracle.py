"""The plan against pip itself, on the real index.

For ~20 pins with stable answers, pip is asked to download a binary wheel
for each platform, with every manylinux platform tag that platform accepts
(pip does not expand `manylinux_2_36` to lower versions itself). pip finding
a wheel ⇔ our verdict `upstream`, and the file must be the one pip chose.
pip's answers are also recorded in `data/plan_oracle.json`: a change there
means the index changed under us, and the test says so.

Set ORCHESTRATE_RECORD_ORACLE=1 to re-record after checking a difference.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orchestrator.config import Matrix, load_matrix
from orchestrator.config.matrix import Platform, expand, select
from orchestrator.core.layout import RunLayout
from orchestrator.images.pipeline import ImagesReport
from orchestrator.model import Action
from orchestrator.plan.gather import make_plan
from orchestrator.plan.tags import platform_tags
from orchestrator.plan.upstream import Upstream
from tests.builders import in_builder
from tests.conftest import REPO

from .conftest import Local

PINS = [
    "six==1.16.0",
    "PyYAML==6.0.1",
    "netifaces==0.11.0",
    "libsass==0.23.0",
    "python-ldap==3.4.4",
    "MarkupSafe==2.1.3",
    "cffi==1.16.0",
    "simplejson==3.19.2",
    "wrapt==1.16.0",
    "msgpack==1.0.7",
    "psycopg2==2.9.9",
    "protobuf==3.12.0",
    "netaddr==0.10.1",
    "pbr==6.0.0",
    "zope.interface==6.1",
    "ujson==5.9.0",
    "frozenlist==1.4.1",
    "systemd-python==235",
    "greenlet==3.0.3",
    "bcrypt==4.1.2",
    "krb5==0.5.1",
    "setproctitle==1.3.3",
]
RECORD = Path(__file__).parent / "data" / "plan_oracle.json"
# The new arches: 48 pins from OpenStack's constraints that PyPI serves as compiled
# wheels for x86_64, and 6 compiled ones it has as sdists only.
COMPILED = [
    "aiohttp==3.14.3",
    "ast-serialize==0.8.0",
    "autobahn==26.7.1",
    "bcrypt==5.0.0",
    "cassandra-driver==3.30.1",
    "cbor2==6.1.4",
    "cffi==2.1.1",
    "charset-normalizer==3.5.0",
    "confluent-kafka==2.15.0",
    "coverage==7.15.4",
    "cryptography==43.0.3",
    "dulwich==1.2.12",
    "falcon==4.3.1",
    "frozenlist==1.8.0",
    "greenlet==3.5.5",
    "grpcio==1.83.0",
    "libsass==0.23.0",
    "logbook==1.10.1",
    "lxml==6.1.1",
    "markupsafe==3.0.3",
    "msgpack==1.2.1",
    "multidict==6.7.1",
    "pcre2==0.7.1",
    "pillow==12.3.0",
    "propcache==0.5.2",
    "protobuf==7.35.1",
    "psutil==7.2.2",
    "psycopg2-binary==2.9.12",
    "pydantic-core==2.46.4",
    "pyeclib==1.8.0",
    "pymongo==4.17.0",
    "pynacl==1.6.2",
    "pyyaml==6.0.3",
    "pyzmq==27.1.0",
    "rcssmin==1.2.2",
    "rjsmin==1.2.5",
    "rpds-py==2026.6.3",
    "setproctitle==1.3.7",
    "simplejson==4.1.1",
    "sqlalchemy==2.0.52",
    "sysv-ipc==1.2.0",
    "ujson==5.13.0",
    "wrapt==2.3.0",
    "xattr==1.3.0",
    "yappi==1.7.6",
    "yarl==1.24.5",
    "zeroconf==0.150.0",
    "zstd==1.5.7.2",
    "netifaces==0.11.0",
    "psycopg2==2.9.12",
    "systemd-python==235",
    "python-ldap==3.4.7",
    "gssapi==1.11.1",
    "libvirt-python==12.6.0",
]
ARCHES_RECORD = Path(__file__).parent / "data" / "plan_oracle_arches.json"
MULTIARCH = REPO / "examples" / "multiarch.yaml"
ARTIFACTS = REPO / "tests" / "artifacts"


def pip_oracle(pin: str, platform: Platform, python: str, dest: Path) -> str | None:
    """The wheel pip downloads for `pin` on `platform`, or None when it finds none."""
    wheels = pip_wheels([pin], platform, python, dest)
    if wheels is None:
        return None
    [wheel] = wheels
    return wheel


def pip_wheels(pins: list[str], platform: Platform, python: str, dest: Path) -> list[str] | None:
    """The wheels pip downloads for `pins` on `platform` in one run, or None when it
    finds none for one of them (pip then fails the whole run)."""
    args = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
        f"cp{python.replace('.', '')}",
        "--index-url",
        "https://pypi.org/simple/",
        "--no-cache-dir",
        "-q",
        "-d",
        str(dest),
        *pins,
    ]
    # pip prefers platforms in the order given: best (newest glibc) first, as sys_tags.
    for tag in reversed(platform_tags(platform.arch, platform.glibc)):
        args[4:4] = ["--platform", tag]
    env = {
        **os.environ,
        "PIP_FIND_LINKS": "",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_CONFIG_FILE": os.devnull,
    }
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    wheels = sorted(p.name for p in dest.glob("*.whl"))
    if done.returncode == 0 and len(wheels) == len(pins):
        return wheels
    assert "No matching distribution" in done.stderr or "Could not find" in done.stderr, (
        f"pip failed for another reason on {pins}: {done.stderr[-500:]}"
    )
    return None


def host_oracle(
    platforms: Sequence[Platform], pins: list[str], upstream: set[tuple[str, str]], dest: Path
) -> dict[tuple[str, str], str | None]:
    """pip's wheel for each (platform, pin), asked with the platform's tags. pip takes a
    second to start, so on each platform the pins our plan leaves `upstream` are asked
    in one run (the same finder picks each pin's file), and every other pin in a run
    of its own, where pip finding none fails that pin alone. Should a shared run fail,
    a pin we took for upstream has no wheel: that platform's pins are asked alone."""

    def shared(platform: Platform) -> dict[tuple[str, str], str | None] | None:
        asked = [pin for pin in pins if (platform.name, pin) in upstream]
        python = platform.python[0]
        found = pip_wheels(asked, platform, python, dest / platform.name) if asked else []
        if found is None:
            return None
        by_project = {_project(wheel): wheel for wheel in found}
        return {(platform.name, pin): by_project[_project(pin)] for pin in asked}

    def alone(job: tuple[Platform, str]) -> str | None:
        platform, pin = job
        return pip_oracle(pin, platform, platform.python[0], dest / f"{platform.name}-{pin}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        together = dict(zip(platforms, pool.map(shared, platforms), strict=True))
        jobs = [
            (p, pin)
            for p in platforms
            for pin in pins
            if (p.name, pin) not in upstream or together[p] is None
        ]
        oracle = dict(zip([(p.name, pin) for p, pin in jobs], pool.map(alone, jobs), strict=True))
    for answers in together.values():
        oracle.update(answers or {})
    return oracle


def test_plan_agrees_with_pip(tmp_path: Path, write_reqs: Path) -> None:
    platforms = select(expand(load_matrix(REPO / "platforms.yaml")), ["debian-*"])
    jobs = [(pin, p) for p in platforms for pin in PINS]
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(
            pool.map(
                lambda job: pip_oracle(
                    job[0], job[1], "3.11", tmp_path / f"{job[1].name}-{job[0]}"
                ),
                jobs,
            )
        )
    oracle = {f"{p.name} {pin}": wheel for (pin, p), wheel in zip(jobs, answers, strict=True)}

    matrix = load_matrix(REPO / "platforms.yaml")
    result = make_plan(matrix, platforms, [write_reqs], upstream=_upstream(matrix))
    ours = {f"{d.platform} {d.name}": d for d in result.decisions}
    rows = []
    for (pin, platform), expected in zip(jobs, answers, strict=True):
        name = pin.split("==")[0].lower().replace(".", "-").replace("_", "-")
        decision = ours[f"{platform.name} {name}"]
        rows.append(
            {
                "platform": platform.name,
                "pin": pin,
                "pip": expected,
                "plan": decision.action.value,
                "wheel": decision.wheel,
                "reason": decision.reason,
            }
        )
        assert (decision.action == Action.UPSTREAM) == (expected is not None), rows[-1]
        assert decision.wheel == expected or decision.action != Action.UPSTREAM, rows[-1]

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "plan-oracle.json").write_text(json.dumps(rows, indent=1))
    if os.environ.get("ORCHESTRATE_RECORD_ORACLE"):
        RECORD.write_text(json.dumps(oracle, indent=1, sort_keys=True) + "\n")
    recorded = json.loads(RECORD.read_text())
    changed = {k: (recorded.get(k), v) for k, v in oracle.items() if recorded.get(k) != v}
    assert not changed, f"the index changed since the oracle was recorded: {changed}"
    # Both answers appear in the record: the test exercises upstream and build verdicts.
    assert any(v is None for v in recorded.values())
    assert any(v is not None for v in recorded.values())


def test_plan_agrees_with_pip_on_the_new_arches(tmp_path: Path) -> None:
    """ppc64le and s390x (bookworm, glibc 2.36, cp311) and riscv64 (trixie, glibc 2.41,
    cp313, manylinux from 2_31 on): our verdict against pip's, pin by pin."""
    matrix = load_matrix(MULTIARCH)
    platforms = select(expand(matrix), ["*-ppc64le", "*-s390x", "*-riscv64"])
    reqs = tmp_path / "compiled.txt"
    reqs.write_text("\n".join(COMPILED) + "\n")
    decisions = make_plan(matrix, platforms, [reqs], upstream=_upstream(matrix)).decisions
    ours = {(d.platform, d.name): d for d in decisions}
    jobs = [(pin, p) for p in platforms for pin in COMPILED]
    upstream = {
        (p.name, pin) for pin, p in jobs if ours[(p.name, _project(pin))].action == Action.UPSTREAM
    }
    answered = host_oracle(platforms, COMPILED, upstream, tmp_path / "pip")
    answers = [answered[(p.name, pin)] for pin, p in jobs]
    disagreements = []
    for (pin, platform), wheel in zip(jobs, answers, strict=True):
        decision = ours[(platform.name, _project(pin))]
        is_upstream = decision.action == Action.UPSTREAM
        if is_upstream != (wheel is not None) or (is_upstream and decision.wheel != wheel):
            disagreements.append((platform.name, pin, wheel, decision.action, decision.wheel))
    assert disagreements == []
    oracle = {f"{p.name} {pin}": w for (pin, p), w in zip(jobs, answers, strict=True)}
    if os.environ.get("ORCHESTRATE_RECORD_ORACLE"):
        ARCHES_RECORD.write_text(json.dumps(oracle, indent=1, sort_keys=True) + "\n")
    recorded = json.loads(ARCHES_RECORD.read_text())
    changed = {k: (recorded.get(k), v) for k, v in oracle.items() if recorded.get(k) != v}
    assert not changed, f"the index changed since the oracle was recorded: {changed}"
    for arch in ("ppc64le", "s390x", "riscv64"):  # each arch has both verdicts
        answers_of = [v for k, v in recorded.items() if k.split()[0].endswith(arch)]
        assert None in answers_of
        assert any(answers_of)


@pytest.fixture
def write_reqs(tmp_path: Path) -> Path:
    path = tmp_path / "oracle-requirements.txt"
    path.write_text("\n".join(PINS) + "\n")
    return path


PIP = "/opt/orchestrate/py3.11/bin/pip"
DOWNLOAD = f"{PIP} download -q --no-deps --only-binary=:all:"


def builder_oracle(
    image: str, arch: str, pins: list[str], upstream: set[str]
) -> dict[str, str | None]:
    """What pip inside the platform's own builder downloads, with its own tags (no
    --platform flags), in the builder. Pip takes seconds to start
    under QEMU, so the pins our plan leaves `upstream` are asked in one pip run
    (the same finder picks each pin's file); each other pin in a run of its own,
    where pip finding none fails that pin alone. Should the shared run fail, a pin
    we took for upstream has no wheel: every pin is then asked alone."""
    shared = [pin for pin in pins if pin in upstream]
    alone = [pin for pin in pins if pin not in upstream]
    quoted = " ".join(f"'{pin}'" for pin in shared)
    script = [f"{DOWNLOAD} -d /tmp/shared {quoted} >/dev/null 2>&1 && ls /tmp/shared || true"]
    answers = _in_builder(image, arch, [*script, *_each_alone(alone)])
    found = {_project(line): line for line in answers.get("", []) if line.endswith(".whl")}
    if shared and not found:
        answers = {**answers, **_in_builder(image, arch, _each_alone(shared))}
    oracle = {pin: found.get(_project(pin)) for pin in shared}
    for pin in [*alone, *(shared if not found else [])]:
        [answer] = answers[pin]
        oracle[pin] = None if answer == "NONE" else answer
    return oracle


def _each_alone(pins: list[str]) -> list[str]:
    return [
        f"d=/tmp/d{n}; {DOWNLOAD} -d $d '{pin}' >/dev/null 2>&1 "
        f"&& echo \"{pin} $(ls $d)\" || echo '{pin} NONE'"
        for n, pin in enumerate(pins)
    ]


def _in_builder(image: str, arch: str, lines: list[str]) -> dict[str, list[str]]:
    """Each line's answers in the builder: `pin file` by pin; a bare file under ""."""
    done = in_builder(image, arch, "; ".join(lines))
    assert done.returncode == 0, done.stderr[-1000:]
    answers: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        pin, _, answer = line.rpartition(" ")
        answers.setdefault(pin, []).append(answer)
    return answers


def _project(pin_or_wheel: str) -> str:
    """A pin's or a wheel's project, normalized (PEP 503): pins name one each."""
    name = pin_or_wheel.split("-" if pin_or_wheel.endswith(".whl") else "==", maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def test_plan_agrees_with_pip_inside_each_builder(
    built_images: ImagesReport, local: Local, write_reqs: Path
) -> None:
    platforms = expand(local.matrix)
    probed = {p: f.tags for p, f in built_images.facts.items()}
    decisions = make_plan(
        local.matrix, platforms, [write_reqs], upstream=_upstream(local.matrix), probed=probed
    ).decisions
    ours = {(d.platform, d.name): d for d in decisions}
    disagreements = []
    for platform in platforms:
        facts = built_images.facts[platform.name]
        ours_upstream = {
            pin for pin in PINS if ours[(platform.name, _project(pin))].action == Action.UPSTREAM
        }
        oracle = builder_oracle(facts.ref, platform.arch.value, PINS, ours_upstream)
        for pin, wheel in oracle.items():
            decision = ours[(platform.name, _project(pin))]
            upstream = decision.action == Action.UPSTREAM
            if upstream != (wheel is not None) or (upstream and decision.wheel != wheel):
                disagreements.append((platform.name, pin, wheel, decision.action, decision.wheel))
    assert disagreements == []
    assert any(d.action == Action.UPSTREAM for d in decisions)
    assert any(d.action == Action.BUILD for d in decisions)


def _upstream(matrix: Matrix) -> Upstream:
    """The index through the shared page cache (ORCHESTRATE_CACHE_DIR's, as a run's)."""
    return Upstream.of(matrix.index.upstream_index, RunLayout(Path()).index_cache)
