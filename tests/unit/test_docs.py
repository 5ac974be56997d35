"""The documentation: the site builds with warnings as errors (links and anchors
checked offline), its references hold every CLI option and matrix key, and the
README is a short landing page whose no-Docker commands run as printed."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from orchestrator.cli import cli
from orchestrator.config.schema import matrix_json_schema

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs"))
import hooks  # noqa: E402  (docs/hooks.py: the generators the site uses)

README_LINES = 250
NO_DOCKER = "# no Docker needed"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [str(ROOT / "scripts" / "docs"), "--site-dir", str(out)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "WARNING" not in done.stderr, done.stderr[-3000:]
    return out


def _text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


def _commands(group: click.Group, path: str) -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        yield f"{path}-{name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{path}-{name}")


def _section(page: str, anchor: str) -> str:
    """A command's part of the CLI page: from its heading to the next heading."""
    start = page.index(f'id="{anchor}"')
    following = re.search(r"<h[1-4] id=", page[start + 1 :])
    return page[start : start + 1 + following.start()] if following else page[start:]


def test_every_cli_option_is_in_the_generated_reference(site: Path) -> None:
    page = (site / "reference" / "cli" / "index.html").read_text()
    checked = 0
    for anchor, command in _commands(cli, "orchestrate"):
        section = html.unescape(_section(page, anchor))
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                for opt in param.opts:
                    assert opt in section, f"{anchor}: {opt} is not in the CLI reference"
                    checked += 1
    assert checked > 100  # every command's options, not a page that lost them all


def _key_paths(schema: dict[str, object]) -> list[str]:
    rows = hooks._object_rows(schema, schema["$defs"], "")  # type: ignore[arg-type]
    return [row[0] for row in rows]


def test_every_matrix_key_is_in_the_generated_reference(site: Path) -> None:
    text = _text(site / "reference" / "matrix" / "index.html")
    schema = matrix_json_schema()
    paths = _key_paths(schema)
    assert "`distros[].base.suite`" in paths
    assert "`overrides[].packages.deb`" in paths
    for path in paths:
        assert path.strip("`") in text, f"{path} is not in the matrix reference"
    # Every key of the models is reached: top level and each nested model.
    assert set(schema["properties"]) <= {p.strip("`") for p in paths}


def test_every_exit_code_and_category_is_on_its_page(site: Path) -> None:
    from orchestrator.core.errors import EXIT_CODES
    from orchestrator.model import Category

    text = _text(site / "reference" / "exit-codes" / "index.html")
    for code in EXIT_CODES:
        assert f"| {code} |" in hooks.exit_codes()
    for category in Category:
        assert category.value in text


def test_external_links_are_listed_not_fetched(site: Path) -> None:
    """mkdocs --strict checked every internal link and anchor; the external ones are
    printed for a reader to check, and must at least be well-formed https URLs."""
    links = set()
    for page in site.rglob("*.html"):
        for href in re.findall(r'href="(https?://[^"]+)"', page.read_text()):
            if "/assets/" not in href and "fonts.googleapis" not in href:
                links.add(href)
    print("external links:", *sorted(links), sep="\n  ")
    assert links
    assert all(re.match(r"^https://[A-Za-z0-9.-]+\.[a-z]{2,}(/|$)", link) for link in links)


def test_the_report_screenshot_is_in_the_docs() -> None:
    """Made by tests/integration/test_reproduce_report.py, not by hand."""
    shot = ROOT / "docs" / "assets" / "report.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000


def test_the_readme_is_a_landing_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_LINES, f"README.md has {len(lines)} lines"


def _no_docker_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)
    return [b for b in blocks if b.startswith(NO_DOCKER)]


def test_the_readme_has_commands_that_need_no_docker() -> None:
    assert len(_no_docker_blocks()) >= 1


@pytest.mark.parametrize("block", _no_docker_blocks(), ids=lambda b: b.splitlines()[1][:40])
def test_the_readmes_no_docker_commands_run_as_printed(block: str, tmp_path: Path) -> None:
    """As a fresh shell of this user runs them: no venv on the PATH, no engine to
    reach, an empty cache."""
    path = [p for p in os.environ["PATH"].split(":") if not p.endswith("/.venv/bin")]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env |= {
        "PATH": ":".join(path),
        "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock",
        "ORCHESTRATE_CACHE_DIR": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
