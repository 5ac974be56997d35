#!/usr/bin/env python3
"""Resolve a job's build requirements with pip, natively, wheels only.

Run by orchestrate in a builder that is native to the engine (for an emulated
job, a builder of the same release and Python on the engine's own arch),
copied in per run like the smoke check, with network. /job/requirements.txt
lists the requirements; /job/deps holds the platform's cached wheels;
/job/build-constraints.txt, when present, constrains every step. The wheels
pip chooses go to /job/got. With $ORCHESTRATE_TARGET (JSON: platforms, abis,
implementation, python_version) pip chooses for that platform's tags, which
it ranks in the order given, best first. orchestrate then unpacks the wheels
into the job's build environment itself: no pip under emulation.

Exit codes: 0 ok, 11 pip could not find or download them.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

JOB = Path("/job")
EXIT_DEPS = 11


def main():
    requirements = [r for r in (JOB / "requirements.txt").read_text().split("\n") if r.strip()]
    got, deps = JOB / "got", JOB / "deps"
    got.mkdir(parents=True, exist_ok=True)
    deps.mkdir(parents=True, exist_ok=True)
    args = ["--only-binary", ":all:", "-d", str(got), "--find-links", str(deps)]
    args += json.loads(os.environ.get("ORCHESTRATE_PIP_OPTIONS") or "[]")
    if (JOB / "build-constraints.txt").is_file():
        args += ["-c", str(JOB / "build-constraints.txt")]
    target = json.loads(os.environ.get("ORCHESTRATE_TARGET") or "null")
    if target:
        args += [a for p in target["platforms"] for a in ("--platform", p)]
        args += [a for abi in target["abis"] for a in ("--abi", abi)]
        args += ["--implementation", target["implementation"],
                 "--python-version", target["python_version"]]
    argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", *args,
            *requirements]
    print("+ " + " ".join(argv), flush=True)
    return 0 if subprocess.run(argv, check=False).returncode == 0 else EXIT_DEPS


if __name__ == "__main__":
    sys.exit(main())
