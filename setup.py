"""The commit a wheel is built from, written into it as orchestrator/_revision.txt.

Everything else about the package is in pyproject.toml; this hook only records
`git rev-parse HEAD` of the checkout being built, so that `orchestrate --version`
names the exact commit a CI job installed (an editable checkout asks git itself).
"""

import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithRevision(build_py):
    def run(self) -> None:
        super().run()
        try:
            done = subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=Path(__file__).parent,
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            )
        except (OSError, subprocess.SubprocessError):
            return  # not a git checkout (an sdist): the version says "unknown commit"
        target = Path(self.build_lib) / "orchestrator" / "_revision.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(done.stdout.strip() + "\n")


setup(cmdclass={"build_py": BuildPyWithRevision})
