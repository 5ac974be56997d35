"""Bad input and environment faults through the CLI: exit 2, 3 or 4 with a clear
message, never 70, never a traceback. A hostile index, malformed reports,
unwritable output paths, SIGTERM, and log links that are not local paths."""

from __future__ import annotations

import http.server
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.report.html import render_html
from tests.conftest import CliRunner
from tests.matrices import local_matrix_copy


class Hostile(http.server.BaseHTTPRequestHandler):
    """A PEP 691 index whose answers are odd: hashes as a list, a huge page."""

    def do_GET(self) -> None:
        if "/huge/" in self.path:
            body = b'{"files": [' + b" " * (70 << 20) + b"]}"
        else:
            entry = {"filename": "odd-1.0.tar.gz", "url": "odd-1.0.tar.gz", "hashes": ["x"]}
            body = json.dumps({"meta": {"api-version": "1.0"}, "files": [entry]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client hanging up on the huge page is the point


@pytest.fixture
def hostile_matrix(tmp_path: Path) -> Iterator[Path]:
    server = QuietServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/simple/"
    yield local_matrix_copy(
        tmp_path / "m.yaml",
        tmp_path / "w",
        {"upstream: https://pypi.org/simple/": f"upstream: {url}"},
    )
    server.shutdown()


@pytest.mark.parametrize(("pin", "words"), [("odd==1.0", "unreadable"), ("huge==1.0", "MiB")])
def test_a_hostile_index_is_exit_3(
    cli: CliRunner, hostile_matrix: Path, tmp_path: Path, pin: str, *, words: str
) -> None:
    (tmp_path / "r.txt").write_text(pin + "\n")
    result = cli("plan", "-m", str(hostile_matrix), "-r", str(tmp_path / "r.txt"))
    assert result.code == 3, result.err
    assert words in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    "report",
    [
        {"schema_version": 1, "run_id": "x", "jobs": {"not": "a list"}},
        {"schema_version": 1, "run_id": "x", "jobs": [{"platform": 1}]},
        {"schema_version": 1, "run_id": "x", "jobs": ["text"]},
    ],
)
def test_malformed_reports_are_exit_2(cli: CliRunner, tmp_path: Path, report: object) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    for args in (
        ("reproduce", "debian-bookworm-amd64", "crcmod", "--report", str(path)),
        ("report", str(path), "--html", str(tmp_path / "out.html")),
    ):
        result = cli(*args)
        assert result.code == 2, (args, result.err)
        assert "Traceback" not in result.err
        assert "internal error" not in result.err


def minimal_report(jobs: list[dict[str, object]]) -> dict[str, object]:
    return {
        "schema_version": 1,
        "run_id": "x",
        "started": "",
        "finished": "",
        "matrix": "m",
        "platforms": ["p"],
        "summary": {
            "built": 0,
            "shared": 0,
            "failed": len(jobs),
            "timeout": 0,
            "upstream": 0,
            "cached": 0,
            "emulated_seconds": 0,
        },
        "plan": [],
        "jobs": jobs,
        "images": [],
        "store": [],
        "published": [],
    }


def test_unwritable_output_paths_are_exit_2(cli: CliRunner, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    report.write_text(json.dumps(minimal_report([])))
    for target in ("/proc/nope/out.html", str(tmp_path)):
        result = cli("report", str(report), "--html", target)
        assert result.code == 2, result.err
        assert "cannot write" in result.err or "directory" in result.err


def test_a_report_whose_log_path_holds_a_nul_byte_is_named(cli: CliRunner, tmp_path: Path) -> None:
    job: dict[str, object] = {
        "job": "p/x==1",
        "platform": "p",
        "name": "x",
        "version": "1",
        "status": "failed",
        "log": "/tmp/x\x00.log",
    }
    report = tmp_path / "r.json"
    report.write_text(json.dumps(minimal_report([job])))
    result = cli("report", str(report), "--html", str(tmp_path / "out.html"))
    assert result.code == 2, result.err
    assert str(report) in result.err
    assert "jobs/0" in result.err
    assert "Traceback" not in result.err


def test_sigterm_is_exit_130(tmp_path: Path) -> None:
    matrix = local_matrix_copy(tmp_path / "m.yaml", tmp_path / "w")
    server = subprocess.Popen(
        ["orchestrate", "serve", "-m", str(matrix), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    server.stdout.readline()  # serving ...
    time.sleep(0.2)
    server.send_signal(signal.SIGTERM)
    _, err = server.communicate(timeout=10)
    assert server.returncode == 130, err
    assert "Traceback" not in err


def test_log_links_are_only_local_relative_paths(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    (work / "logs" / "ok.log").write_text("log")
    job = {
        "job": "p/a==1",
        "platform": "p",
        "python": "3.11",
        "name": "a",
        "version": "1",
        "status": "failed",
        "duration": 1.0,
        "engine": "local",
        "emulated": False,
        "detail": "",
        "kind": "wheel",
    }
    jobs = [
        {**job, "name": "a", "log": str(work / "logs" / "ok.log")},
        {**job, "name": "b", "log": "javascript:alert(1)"},
        {**job, "name": "c", "log": "/etc/passwd"},
    ]
    page = render_html(minimal_report(jobs), work / "reports" / "r.html")
    assert 'href="../logs/ok.log"' in page
    assert "javascript:" not in page
    assert "/etc/passwd" not in page


@pytest.mark.parametrize("command", [("build", "-r", "REQS"), ("images", "build")])
def test_an_unreachable_engine_is_exit_3_naming_it(
    cli: CliRunner, tmp_path: Path, command: tuple[str, ...]
) -> None:
    matrix = local_matrix_copy(
        tmp_path / "m.yaml",
        tmp_path / "w",
        {"url: unix:///var/run/docker.sock": "url: tcp://127.0.0.1:9"},
    )
    (tmp_path / "r.txt").write_text("six==1.16.0\n")
    args = [str(tmp_path / "r.txt") if a == "REQS" else a for a in command]
    result = cli(*args, "-m", str(matrix), "--workdir", str(tmp_path / "work"))
    assert result.code == 3, result.out + result.err
    assert "engine local at tcp://127.0.0.1:9 does not answer" in result.err
    assert "QEMU" not in result.out + result.err
    assert "Traceback" not in result.err


def test_options_come_from_the_environment_and_the_command_line_wins(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    matrix = local_matrix_copy(tmp_path / "m.yaml", tmp_path / "w")
    monkeypatch.chdir(tmp_path)  # no platforms.yaml here
    monkeypatch.setenv("ORCHESTRATE_MATRIX", str(matrix))
    monkeypatch.setenv("ORCHESTRATE_PLATFORM", "*-arm64")
    shown = cli("matrix", "show", "--format", "json")
    assert shown.code == 0, shown.err
    assert [p["name"] for p in json.loads(shown.out)] == ["debian-bookworm-arm64"]
    both = cli("matrix", "show", "--format", "json", "-p", "*-amd64")
    assert [p["name"] for p in json.loads(both.out)] == ["debian-bookworm-amd64"]
    monkeypatch.setenv("ORCHESTRATE_MATRIX_SHOW_FORMAT", "json")
    assert json.loads(cli("matrix", "show").out)[0]["name"] == "debian-bookworm-arm64"


def test_every_option_has_help_text() -> None:
    import click

    from orchestrator.cli import cli as root

    missing = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        for param in command.params:
            if isinstance(param, click.Option) and not param.help:
                missing.append(f"{' '.join(path)} {param.opts[0]}")
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))

    walk(root, ())
    assert missing == []


def test_click_usage_errors_use_our_style(cli: CliRunner) -> None:
    result = cli("build", "--nope")
    assert result.code == 2
    assert "error: No such option '--nope'" in result.err
    assert "Error:" not in result.err
    assert "hint: see `orchestrate build --help`" in result.err


def test_a_relative_index_root_outside_the_matrix_folder_is_warned_about(
    cli: CliRunner, tmp_path: Path
) -> None:
    (tmp_path / "sub").mkdir()
    inside = local_matrix_copy(tmp_path / "sub" / "m.yaml", Path("wheels"))
    outside = local_matrix_copy(tmp_path / "sub" / "o.yaml", Path("../wheels"))
    quiet = cli("matrix", "show", "-m", str(inside), "--index-root")
    assert quiet.out.strip() == str(tmp_path / "sub" / "wheels")
    assert "warning" not in quiet.err
    loud = cli("matrix", "show", "-m", str(outside), "--index-root")
    assert loud.out.strip() == str(tmp_path / "wheels")
    assert "outside this file's folder" in loud.err
    assert "o.yaml:" in loud.err


def test_tables_on_80_columns_keep_key_columns_whole() -> None:
    import io

    from orchestrator.cli.app import App, SteadyConsole, print_rows

    out = io.StringIO()
    app = App(console=SteadyConsole(file=out, width=80, force_terminal=True, color_system=None))
    reason = "no cp311 wheel (has cp36, cp37, cp38, cp39, cp310) " * 3
    print_rows(
        app,
        ("platform", "requirement", "action", "reason"),
        [("centos-stream9-ppc64le", "oslo-concurrency==7.2.0", "build", reason)],
    )
    text = out.getvalue()
    assert "centos-stream9-ppc64le" in text
    assert "oslo-concurrency==7.2.0" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_global_flags_work_after_the_command(cli: CliRunner, tmp_path: Path) -> None:
    matrix = tmp_path / "bad.yaml"
    matrix.write_text("version: 1\nregistry: {url: x}\n")
    # --debug after the command: the traceback is shown, the exit code stays bad input's
    debug = cli("matrix", "validate", str(matrix), "--debug")
    assert "Traceback" in debug.err
    assert debug.code == 2
    quiet = cli("matrix", "show", "-m", str(local_matrix_copy(tmp_path / "m.yaml", tmp_path)), "-q")
    assert quiet.code == 0
    assert "debian-bookworm-amd64" in quiet.out  # results stay; progress lines go


def test_format_json_for_scripts(cli: CliRunner, tmp_path: Path) -> None:
    from orchestrator.store import Provenance, Store
    from tests.wheelfactory import make_wheel

    unreachable = local_matrix_copy(
        tmp_path / "u.yaml",
        tmp_path / "w",
        {"url: unix:///var/run/docker.sock": "url: tcp://127.0.0.1:9"},
    )
    doctor = cli("doctor", "-m", str(unreachable), "--format", "json")
    assert doctor.code == 3
    checks = json.loads(doctor.out)
    engine = next(c for c in checks if c["subject"].startswith("engine"))
    assert engine["ok"] is False
    assert "does not answer" in engine["detail"]

    root = tmp_path / "index"
    matrix = local_matrix_copy(tmp_path / "m.yaml", root)
    store = Store(root)
    with store.locked() as records:
        wheel = make_wheel(tmp_path / "made", "demo", "1.0")
        store.add(records, wheel, ["debian-bookworm-amd64"], Provenance())
    published = cli("publish", "-m", str(matrix), "--format", "json")
    assert published.code == 0, published.err
    rows = {r["platform"]: r for r in json.loads(published.out)}
    assert rows["debian-bookworm-amd64"]["status"] == "published"
    assert rows["debian-bookworm-amd64"]["wheels"] == 1


def test_the_commands_page_matches_help() -> None:
    """Every command `--help` shows has its paragraph on the docs' commands page, and
    every option a paragraph names exists (the options themselves are listed by the
    generated CLI reference)."""
    import re

    import click

    from orchestrator.cli import cli as root
    from tests.conftest import REPO

    reference = (REPO / "docs" / "concepts" / "commands.md").read_text()
    bullets = {}
    for block in re.split(r"\n- (?=`orchestrate )", reference):
        head = re.match(r"`orchestrate ([a-z -]+?)(?: [A-Z\[\-`]|`)", block.lstrip("- "))
        if head:
            bullets[head.group(1).strip()] = block
    problems = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
            return
        name = " ".join(path)
        text = bullets.get(name)
        if text is None:
            problems.append(f"`orchestrate {name}` is not on the commands page")
            return
        shared = {"--matrix", "--platform", "--workdir", "--help"}
        named = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", text))
        known = {o for p in command.params for o in p.opts} | shared
        unknown = sorted(named - known)
        problems.extend(f"{name}: the page names {o}, --help has no such option" for o in unknown)

    walk(root, ())
    assert problems == []


def test_setup_host_ships_with_the_package(cli: CliRunner) -> None:
    from pathlib import Path as P

    import orchestrator

    script = P(orchestrator.__file__).parent / "setup-host.sh"
    assert script.is_file()
    assert "qemu-user-static" in script.read_text()
    # `--help` of the script itself, through the command (it prints and exits 0).
    done = subprocess.run(
        ["orchestrate", "setup-host", "--", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "--test" in done.stdout


def test_a_long_url_requirement_does_not_widen_the_plan_table(
    cli: CliRunner, tmp_path: Path
) -> None:
    matrix = local_matrix_copy(tmp_path / "m.yaml", tmp_path / "w")
    url = "https://example.invalid/" + "a" * 110 + "/pkg-1.0.tar.gz"
    (tmp_path / "r.txt").write_text(f"pkg @ {url}\n")
    result = cli("plan", "-m", str(matrix), "-r", str(tmp_path / "r.txt"))
    header = next(line for line in result.out.splitlines() if "requirement" in line)
    assert header.index("action") < 48 + 40, header  # not pushed past the URL's length
    row = next(line for line in result.out.splitlines() if url in line)
    assert "unsupported" in row
