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
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orchestrator.config import load_matrix
from orchestrator.images.pipeline import ImagesReport
from orchestrator.matrix import Platform, expand, select
from orchestrator.wheels.inputs import make_plan
from orchestrator.wheels.plan import Action
from orchestrator.wheels.tags import platform_tags
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
ARTIFACTS = REPO / "tests" / "artifacts"


def pip_oracle(pin: str, platform: Platform, python: str, dest: Path) -> str | None:
    """The wheel pip downloads for `pin` on `platform`, or None when it finds none."""
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
        pin,
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
    if done.returncode == 0 and len(wheels) == 1:
        return wheels[0]
    assert "No matching distribution" in done.stderr or "Could not find" in done.stderr, (
        f"pip failed for another reason on {pin}: {done.stderr[-500:]}"
    )
    return None


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

    result = make_plan(load_matrix(REPO / "platforms.yaml"), platforms, [write_reqs])
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


@pytest.fixture
def write_reqs(tmp_path: Path) -> Path:
    path = tmp_path / "oracle-requirements.txt"
    path.write_text("\n".join(PINS) + "\n")
    return path


def builder_oracle(image: str, arch: str, pins: list[str]) -> dict[str, str | None]:
    """What pip inside the platform's own builder downloads, with its own tags (no
    --platform flags): one container per platform, one pip run per pin."""
    pip = "/opt/orchestrate/py3.11/bin/pip"
    lines = " ".join(
        f"rm -rf /tmp/d; {pip} download -q --no-deps --only-binary=:all: -d /tmp/d "
        f"'{pin}' >/dev/null 2>&1 && echo \"{pin} $(ls /tmp/d)\" || echo '{pin} NONE';"
        for pin in pins
    )
    done = subprocess.run(
        ["docker", "run", "--rm", "--platform", f"linux/{arch}", image, "sh", "-c", lines],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-1000:]
    answers = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    return {pin: None if answers[pin] == "NONE" else answers[pin] for pin in pins}


def test_plan_agrees_with_pip_inside_each_builder(
    built_images: ImagesReport, local: Local, write_reqs: Path
) -> None:
    platforms = expand(local.matrix)
    probed = {p: f.tags for p, f in built_images.facts.items()}
    decisions = make_plan(local.matrix, platforms, [write_reqs], probed=probed).decisions
    ours = {(d.platform, d.name): d for d in decisions}
    disagreements = []
    for platform in platforms:
        facts = built_images.facts[platform.name]
        oracle = builder_oracle(facts.ref, platform.arch.value, PINS)
        for pin, wheel in oracle.items():
            name = pin.split("==")[0].lower().replace(".", "-").replace("_", "-")
            decision = ours[(platform.name, name)]
            upstream = decision.action == Action.UPSTREAM
            if upstream != (wheel is not None) or (upstream and decision.wheel != wheel):
                disagreements.append((platform.name, pin, wheel, decision.action, decision.wheel))
    assert disagreements == []
    assert any(d.action == Action.UPSTREAM for d in decisions)
    assert any(d.action == Action.BUILD for d in decisions)
