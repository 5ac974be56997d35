"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.cli import main

REPO = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO / "examples" / "openstack" / "upper-constraints.txt"


@dataclass
class Result:
    code: int
    out: str
    err: str


CliRunner = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """Run `orchestrate ARGS` in-process through the real entry point."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:
            code = 0
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a dedented text file under tmp_path and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return _write


# The host-made parts of a cache, shared by the test sessions that scripts/test runs
# side by side: bootstrapped bases and native toolchains and venvs are keyed by what
# they are made from, and made once under a host lock whichever session asks first.
# Probes, index pages and durations stay each session's own.
HOST_PARTS = ("bases", "cross")


def _share_host_parts(cache: Path) -> None:
    shared = os.environ.get("ORCHESTRATE_TEST_HOST_PARTS")
    if not shared:
        return
    cache.mkdir(parents=True, exist_ok=True)
    for name in HOST_PARTS:
        (Path(shared) / name).mkdir(parents=True, exist_ok=True)
        (cache / name).symlink_to(Path(shared) / name)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The session gets its own cache dir, never the user's (session-wide, so that
    session fixtures and tests see the same probes and index cache)."""
    old = os.environ.get("ORCHESTRATE_CACHE_DIR")
    cache = tmp_path_factory.getbasetemp() / "cache"
    os.environ["ORCHESTRATE_CACHE_DIR"] = str(cache)
    _share_host_parts(cache)
    yield
    if old is None:
        os.environ.pop("ORCHESTRATE_CACHE_DIR", None)
    else:
        os.environ["ORCHESTRATE_CACHE_DIR"] = old
