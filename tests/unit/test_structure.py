"""The shape of the code, kept: short functions, small folders, floors that import only
downwards, and comments that say why rather than which of our issues."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "orchestrator"
MAX_FUNCTION_LINES = 50
MAX_MODULES = 12


def _modules() -> list[Path]:
    found = [p for p in PACKAGE.rglob("*.py") if "_images" not in p.parts]
    assert len(found) > 50, found  # a wrong folder would make every check below pass
    return found


def test_no_function_is_over_50_lines() -> None:
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines})")
    assert long == []


def test_no_folder_holds_more_than_12_modules() -> None:
    folders = {p.parent for p in _modules()}
    crowded = {
        str(f.relative_to(REPO)): n
        for f in folders
        if (n := len(list(f.glob("*.py")))) > MAX_MODULES
    }
    assert crowded == {}
    assert len(folders) >= 10


def test_the_floors_import_only_downwards() -> None:
    """import-linter's contracts (.importlinter): the layers of the flow, docker-py in
    the engine adapter only, no pydantic under the scheduler. No exceptions listed."""
    config = (REPO / ".importlinter").read_text()
    assert "ignore_imports =\n    orchestrator.engines.docker -> docker\n" in config
    assert config.count("ignore_imports") == 1
    linter = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(linter), "--config", str(REPO / ".importlinter")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in done.stdout


def test_no_comment_names_one_of_our_issues() -> None:
    """The reason goes in the comment, or the upstream issue it works around; our own
    issue numbers belong in commit messages."""
    texts = [*_modules(), *(REPO / "images").rglob("*.*"), REPO / "README.md"]
    texts += [REPO / "CHANGELOG.md", *(REPO / "docs").rglob("*.md")]
    texts += list(PACKAGE.rglob("*.j2"))
    # The code around the package too: the files git tracks there (a benchmark's or a
    # test's output left in the checkout is not ours to read).
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "tests", "benchmarks", "scripts"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    texts += [REPO / p for p in tracked if Path(p).suffix not in (".png", ".json")]
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()[:80]}"
        for path in texts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"(?<![\w/&])#\d{1,4}\b", line)
    ]
    assert found == []
