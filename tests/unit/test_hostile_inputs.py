"""Inputs that never end, nest too deep, hide secrets or point somewhere they should
not: each gets exit 2 or 3 naming the file or thing, quickly, through the CLI, with
real files, FIFOs, devices, processes and local HTTP servers."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.core.process import Command, run, url_secrets
from orchestrator.core.redact import RedactingLog, redact
from orchestrator.report.html import render_html
from tests.conftest import CliRunner
from tests.matrices import local_matrix_copy
from tests.unit.test_report import _report

# -- endless and deep matrices ---------------------------------------------------------


def _deep_flow(levels: int) -> str:
    return "version: " + "[" * levels + "]" * levels + "\n"


def _deep_block(levels: int) -> str:
    return "version:\n" + "".join("  " * (i + 1) + "a:\n" for i in range(levels))


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.write_text(_deep_flow(900)),
        lambda p: p.write_text(_deep_flow(20_000)),
        lambda p: p.write_text(_deep_block(900)),
        os.mkfifo,
    ],
    ids=["flow-900", "flow-20000", "block-900", "fifo"],
)
def test_endless_or_deep_matrices_are_exit_2_quickly(
    cli: CliRunner, tmp_path: Path, make: object
) -> None:
    path = tmp_path / "m.yaml"
    make(path)  # type: ignore[operator]
    started = time.monotonic()
    result = cli("matrix", "validate", str(path))
    assert time.monotonic() - started < 10
    assert result.code == 2, result.err
    assert str(path) in result.err
    assert "Traceback" not in result.err


def test_a_device_as_the_matrix_is_exit_2(cli: CliRunner) -> None:
    result = cli("matrix", "validate", "/dev/zero")
    assert result.code == 2
    assert "/dev/zero: cannot read the file: not a regular file" in result.err


def test_a_fifo_as_requirements_is_exit_2(cli: CliRunner, tmp_path: Path) -> None:
    matrix = local_matrix_copy(tmp_path / "m.yaml", tmp_path / "w")
    os.mkfifo(tmp_path / "r.txt")
    result = cli("plan", "-m", str(matrix), "-r", str(tmp_path / "r.txt"))
    assert result.code == 2, result.err
    assert "r.txt: cannot read: not a regular file" in result.err


# -- servers that never finish ----------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    body: bytes = b""
    drip: bool = False
    content_type: str = "text/plain"
    routes: dict[str, bytes] = {}  # noqa: RUF012 - a path ending -> its own body


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        routes = self.server.routes
        body = next((b for end, b in routes.items() if path.endswith(end)), self.server.body)
        self.send_response(200)
        self.send_header("Content-Type", self.server.content_type)
        extra = 10_000 if self.server.drip else 0
        self.send_header("Content-Length", str(len(body) + extra))
        self.end_headers()
        self.wfile.write(body)
        for _ in range(10_000 if self.server.drip else 0):  # one byte a second
            try:
                self.wfile.write(b"#")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(1)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def _url(httpd: _Server, path: str = "/") -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}{path}"


def _branch_matrix(tmp_path: Path, constraints: str) -> Path:
    matrix = local_matrix_copy(tmp_path / "m.yaml", tmp_path / "w")
    text = matrix.read_text() + f"branches:\n  - name: master\n    constraints: {constraints}\n"
    matrix.write_text(text)
    return matrix


def test_a_dripping_constraints_url_ends_at_the_deadline(
    cli: CliRunner, tmp_path: Path, server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.drip = True
    monkeypatch.setenv("ORCHESTRATE_DOWNLOAD_DEADLINE", "2")
    monkeypatch.setenv("ORCHESTRATE_CACHE_DIR", str(tmp_path / "cache"))
    matrix = _branch_matrix(tmp_path, _url(server, "/upper-constraints.txt"))
    started = time.monotonic()
    result = cli("plan", "-m", str(matrix))
    assert time.monotonic() - started < 15
    assert result.code == 2, result.err
    assert "did not finish within 2 s" in result.err
    assert "upper-constraints.txt" in result.err


@pytest.mark.parametrize(
    "case",
    [
        (b"six===1.16.0\n\x00\x01\x02binary", "binary data"),
        (b"\n  <!DOCTYPE html><html><body>Sign in</body></html>", "an HTML page"),
        (b"six===1.16.0\nnot a requirement !!\n", "not a valid requirement"),
    ],
)
def test_a_bad_remote_constraints_file_is_named_by_its_branch_and_url(
    cli: CliRunner,
    tmp_path: Path,
    server: _Server,
    *,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[bytes, str],
) -> None:
    """Not the cache file it was kept in: the branch and the URL the user wrote."""
    body, said = case
    server.body = body
    monkeypatch.setenv("ORCHESTRATE_CACHE_DIR", str(tmp_path / "cache"))
    url = _url(server, "/upper-constraints.txt")
    result = cli("plan", "-m", str(_branch_matrix(tmp_path, url)))
    assert result.code == 2, result.err
    assert said in result.err
    assert url in result.err
    assert str(tmp_path / "cache") not in result.err


def test_a_remote_constraints_file_never_reads_a_local_one(
    cli: CliRunner, tmp_path: Path, server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-LINE\n")
    server.body = f"six===1.16.0\n-r {secret}\n".encode()
    monkeypatch.setenv("ORCHESTRATE_CACHE_DIR", str(tmp_path / "cache"))
    matrix = _branch_matrix(tmp_path, _url(server, "/upper-constraints.txt"))
    result = cli("plan", "-m", str(matrix))
    assert result.code == 2, result.err
    assert "a downloaded file includes" in result.err
    assert "TOP-SECRET-LINE" not in result.out + result.err


def _catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler of its own for `signum` (its SigCgt mask)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:  # it has ended: the caller's poll() says so
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def _doctor(url: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "doctor", "--index", url],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_doctor_index_on_a_dripping_server_ends_at_the_deadline(server: _Server) -> None:
    server.drip = True
    started = time.monotonic()
    proc = _doctor(_url(server), {"ORCHESTRATE_DOWNLOAD_DEADLINE": "2"})
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 20
    assert proc.returncode == 3, err
    assert "did not finish within 2 s" in out + err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_doctor_index_ends_on_a_signal_while_a_read_hangs(server: _Server, signum: int) -> None:
    server.drip = True
    proc = _doctor(_url(server), {})
    time.sleep(3)  # in the middle of reading the page
    assert proc.poll() is None
    proc.send_signal(signum)
    _out, err = proc.communicate(timeout=15)
    assert proc.returncode == 130, err
    assert "Traceback" not in err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("delay", [0.25, 0.4, 0.55, 0.7, 1.0])
def test_a_signal_during_start_up_is_exit_130_without_a_traceback(
    server: _Server, signum: int, delay: float
) -> None:
    """The command imports a few hundred modules before it runs: a signal that comes
    then ends it as one that comes later (it printed a traceback and died by the
    signal, -2 or -15, when it came during the imports, which take about 0.8 s here).
    The interpreter's own start and the package's first imports come before any
    handler of ours, and no code of ours can answer for them: on a loaded machine
    they took more than 0.25 s. So the signal comes `delay` after the start, but
    not before the process catches SIGTERM."""
    server.drip = True
    proc = _doctor(_url(server), {})
    started = time.monotonic()
    while not _catches(proc.pid, signal.SIGTERM):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - started < 15
        time.sleep(0.005)
    time.sleep(max(0.0, delay - (time.monotonic() - started)))
    proc.send_signal(signum)
    _out, err = proc.communicate(timeout=15)
    assert proc.returncode == 130, err
    assert "Traceback" not in err


# -- secrets ------------------------------------------------------------------------


def test_a_registry_password_never_reaches_the_validation_error(
    cli: CliRunner, tmp_path: Path
) -> None:
    matrix = local_matrix_copy(
        tmp_path / "m.yaml", tmp_path / "w", {"url: 127.0.0.1:5000": 'url: "ci:S3cr3t@host:5000"'}
    )
    result = cli("matrix", "validate", str(matrix))
    assert result.code == 2
    assert "registry.url" in result.err
    assert "S3cr3t" not in result.err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://ci:Sec@ret@pypi.example/simple/", "https://ci:****@pypi.example/simple/"),
        ("got 'ci:S3cr3t@host:5000'", "got 'ci:****@host:5000'"),
        ("debian:bookworm@sha256:" + "a" * 8, "debian:bookworm@sha256:" + "a" * 8),
        ("mail ci@example.org", "mail ci@example.org"),
    ],
)
def test_redact_whole_passwords(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_secret_split_across_chunks_is_redacted(tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    with path.open("wb") as raw:
        log = RedactingLog(raw)
        for chunk in (b"Looking in https://ci:hunt", b"er2@pypi.example/simple\nnext ", b"line"):
            log.write(chunk)
        log.close()
    text = path.read_text()
    assert "hunter2" not in text
    assert "hunt" not in text
    assert text.endswith("next line")


def test_host_commands_log_no_mirror_password(tmp_path: Path) -> None:
    mirror = "http://apt:Mirr0rPass@mirror.example/debian"
    command = Command(
        ("sh", "-c", f"echo fetching {mirror}/dists; echo token Mirr0rPass", mirror),
        secrets=url_secrets(mirror),
    )
    done = run(command, tmp_path / "debootstrap.log")
    assert done.ok
    text = (tmp_path / "debootstrap.log").read_text()
    assert "Mirr0rPass" not in text
    assert "fetching http://apt:****@mirror.example/debian/dists" in text
    assert "Mirr0rPass" not in command.display()


# -- odd values ---------------------------------------------------------------------


def test_only_relative_or_http_links_in_the_html_report(tmp_path: Path) -> None:
    report = _report(tmp_path)
    report["previous"] = {"run_id": "old", "html": "javascript:alert(document.cookie)"}
    page = render_html(report, tmp_path / "reports" / "run.html")
    assert "javascript:" not in page
    report["previous"] = {"run_id": "old", "html": "old.html"}
    assert 'href="old.html"' in render_html(report, tmp_path / "reports" / "run.html")


def test_a_report_with_a_script_link_is_refused(cli: CliRunner, tmp_path: Path) -> None:
    import json

    report = _report(tmp_path)
    report["previous"] = {"run_id": "old", "html": "javascript:alert(1)"}
    (tmp_path / "r.json").write_text(json.dumps(report))
    result = cli("report", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html"))
    assert result.code == 2
    assert "previous/html" in result.err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf"])
def test_seconds_must_be_finite(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    matrix = local_matrix_copy(tmp_path / "m.yaml", tmp_path / "w")
    for args in (("--timeout", value), ("--deadline", value)):
        result = cli("build", "-m", str(matrix), "-r", "x.txt", *args)
        assert result.code == 2
        assert args[0] in result.err
    monkeypatch.setenv("ORCHESTRATE_BUILD_DEADLINE", value)
    result = cli("build", "-m", str(matrix), "-r", "x.txt")
    assert result.code == 2
    assert "ORCHESTRATE_BUILD_DEADLINE" in result.err


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('six==1.16.0; platform_machine === "x86_64"', "cannot be evaluated"),
        ("a" * 300 + "==1.0", "a project name of 300 characters"),
        ("b" * 1_000_000 + "==1.0", "a project name of 1000000 characters"),
    ],
)
def test_odd_requirement_lines_name_the_line(
    cli: CliRunner, tmp_path: Path, line: str, words: str
) -> None:
    matrix = local_matrix_copy(tmp_path / "m.yaml", tmp_path / "w")
    (tmp_path / "r.txt").write_text(line + "\n")
    result = cli("plan", "-m", str(matrix), "-r", str(tmp_path / "r.txt"))
    assert result.code == 2, result.err
    assert f"{tmp_path / 'r.txt'}:1" in result.err
    assert words in result.err
    assert len(result.err) < 1000


def test_an_index_root_that_is_a_file_is_exit_2(cli: CliRunner, tmp_path: Path) -> None:
    root = tmp_path / "wheels"
    root.write_text("not a folder")
    matrix = local_matrix_copy(tmp_path / "m.yaml", root)
    (tmp_path / "r.txt").write_text("six==1.16.0\n")
    for args in (("publish",), ("plan", "-r", str(tmp_path / "r.txt"))):
        result = cli(*args, "-m", str(matrix))
        assert result.code == 2, result.err
        assert f"index.root '{root}' is not a folder" in result.err
    assert root.read_text() == "not a folder"


def test_an_index_root_with_a_nul_byte_is_exit_2(cli: CliRunner, tmp_path: Path) -> None:
    matrix = local_matrix_copy(tmp_path / "m.yaml", tmp_path / "w")
    matrix.write_text(matrix.read_text().replace(f"root: {tmp_path / 'w'}", 'root: "w\\0x"'))
    result = cli("matrix", "validate", str(matrix))
    assert result.code == 2, result.err
    assert "index.root" in result.err
    assert "NUL byte" in result.err


@pytest.mark.parametrize("kind", ["file", "uncreatable"])
def test_an_unusable_cache_dir_is_exit_2(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    path = tmp_path / "cache"
    if kind == "file":
        path.write_text("x")
    else:
        path = Path("/proc/no-such-process/cache")
    monkeypatch.setenv("ORCHESTRATE_CACHE_DIR", str(path))
    matrix = local_matrix_copy(tmp_path / "m.yaml", tmp_path / "w")
    (tmp_path / "r.txt").write_text("six==1.16.0\n")
    result = cli("plan", "-m", str(matrix), "-r", str(tmp_path / "r.txt"))
    assert result.code == 2, result.err
    assert f"ORCHESTRATE_CACHE_DIR='{path}'" in result.err


def test_serve_on_a_busy_port_is_exit_3_and_on_a_foreign_address_exit_2(
    cli: CliRunner, tmp_path: Path, server: _Server
) -> None:
    """A port in use is the host's state (exit 3, as other host problems); an address
    this host does not have is the input's (exit 2)."""
    matrix = local_matrix_copy(tmp_path / "m.yaml", tmp_path / "w")
    busy = str(server.server_address[1])
    result = cli("serve", "-m", str(matrix), "--port", busy)
    assert result.code == 3, result.err
    assert f"cannot serve on 127.0.0.1:{busy}" in result.err
    result = cli("serve", "-m", str(matrix), "--port", "0", "--host", "192.0.2.77")
    assert result.code == 2, result.err
    assert "cannot serve on 192.0.2.77:0" in result.err


def test_doctor_index_on_an_unsupported_repository_version_is_exit_3(
    server: _Server,
) -> None:
    server.body = (
        b'<html><head><meta name="pypi:repository-version" content="2.0"></head>'
        b'<body><a href="demo/">demo</a></body></html>'
    )
    server.content_type = "text/html"
    proc = _doctor(_url(server), {})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, out + err
    assert "UnsupportedRepoVersionError" in out + err
    assert "Traceback" not in err


def test_a_huge_report_with_an_unknown_job_gets_a_short_hint(
    cli: CliRunner, tmp_path: Path
) -> None:
    import json

    report = _report(tmp_path)
    template = report["jobs"][0]
    report["jobs"] = [{**template, "job": f"x/p{i}==1.0", "name": f"p{i}"} for i in range(50_000)]
    path = tmp_path / "big.json"
    path.write_text(json.dumps(report))
    result = cli("reproduce", "--print", "--report", str(path), "debian-bookworm-arm64", "nope")
    assert result.code == 2
    assert "no job for" in result.err
    assert "and 49980 more" in result.err
    assert len(result.err) < 5_000


VERSION = b'{"Version": "20.10.24", "ApiVersion": "1.41", "Components": []}'


@pytest.mark.parametrize(
    "routes",
    [
        {"/version": VERSION, "/info": b"[1, 2]"},
        {"/version": b'["not", "an", "object"]', "/info": b"{}"},
        {"/version": VERSION, "/info": b'{"Architecture": "\\u001b[2J\\n::error::x"}'},
    ],
)
def test_an_engine_answer_of_the_wrong_shape_is_the_engines_fault(
    cli: CliRunner, tmp_path: Path, server: _Server, routes: dict[str, bytes]
) -> None:
    """An engine's /version or /info of another shape is exit 3 naming the engine,
    never 70; escapes and newlines in its text are never printed raw."""
    server.routes, server.content_type = routes, "application/json"
    server.body = b"OK"  # /_ping
    port = server.server_address[1]
    matrix = local_matrix_copy(
        tmp_path / "m.yaml",
        tmp_path / "w",
        {"url: unix:///var/run/docker.sock": f"url: tcp://127.0.0.1:{port}"},
    )
    result = cli("doctor", "-m", str(matrix))
    said = result.out + result.err
    assert result.code == 3, said
    assert "internal error" not in said
    assert "\x1b" not in said
    assert not any(line.startswith("::") for line in said.splitlines()), said


# The signal comes while a weakref callback runs (as the import system's module-lock
# callback does): Python reports the handler's KeyboardInterrupt and goes on.
SWALLOWED = r"""
import os, signal, sys, weakref
from orchestrator import __main__ as start
for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, start._interrupt)
sys.unraisablehook = start._unraisable
class Held: pass
held = Held()
ref = weakref.ref(held, lambda _: os.kill(os.getpid(), signal.SIGTERM))
del held
if start._received:
    start._interrupted()
print("ran on")
"""


def test_an_interrupt_python_swallows_during_start_up_still_ends_with_130() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SWALLOWED], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 130, done.stderr
    assert "ran on" not in done.stdout
    assert "Traceback" not in done.stderr
    assert done.stderr == "interrupted\n"
