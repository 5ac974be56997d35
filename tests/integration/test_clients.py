"""The index with the clients users have, inside each platform's builder: the pip each
distro ships (in a fresh venv), the latest pip and uv; from our server (JSON to the
clients that ask), a plain static server (HTML only) and nginx with the README's
snippet; with and without --require-hashes. Plus the negative control: pages with the
pre-PEP 714 JSON key, which Debian 12's pip cannot read."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from orchestrator.config.matrix import expand
from orchestrator.images.build import image_tag
from orchestrator.publish.serve import IndexHandler, make_server
from tests.conftest import REPO

from .conftest import Local

AMD, ARM = "debian-bookworm-amd64", "debian-bookworm-arm64"
DRIVER = Path(__file__).parent / "data" / "clients.py"
NGINX_SNIPPET = REPO / "deploy" / "nginx" / "wheel-cache.conf"

# The pip a user of each distro gets from `python3 -m venv` (CentOS Stream 9's is its
# python3.9's bundled pip; that base cannot be pulled here, so the version stands in).
CLIENTS = {
    "debian-12": "",
    "centos-stream-9": "pip==21.2.3",
    "ubuntu-22.04": "pip==22.0.2",
    "ubuntu-24.04": "pip==24.0",
    "latest": "pip",
    "uv": "uv",
}
VERSIONS = {
    "debian-12": "23.0.1",
    "centos-stream-9": "21.2.3",
    "ubuntu-22.04": "22.0.2",
    "ubuntu-24.04": "24.0",
}
# Under emulation each client's venv and installs cost tens of seconds. Which wheel an
# arm64 client takes comes from the tag code every pip vendors (packaging.tags) and
# from uv's own, so arm64 runs the distro's pip and uv; amd64 runs every client.
ARM_CLIENTS = ("debian-12", "uv")
# pip asks for PEP 691 JSON from 22.2 on; uv always does.
ASKS_JSON = {"debian-12", "ubuntu-24.04", "latest", "uv"}


class Recording(IndexHandler):
    """Our server, noting which content type went to which client for which path."""

    seen: list[tuple[str, str, str]] = []  # noqa: RUF012 - shared by the server's threads

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "content-type":
            self.seen.append((self.headers.get("User-Agent", ""), self.path, value))
        super().send_header(keyword, value)


@dataclass(frozen=True)
class Servers:
    urls: dict[str, str]  # server name -> base URL (the index root)
    nginx_log: Path

    def served(self) -> list[tuple[str, str, str]]:
        """(user agent, path, content type) from ours and from nginx."""
        lines = self.nginx_log.read_text().splitlines() if self.nginx_log.is_file() else []
        nginx = [tuple(line.split("\t")) for line in lines if line.count("\t") == 2]
        return [*Recording.seen, *nginx]  # type: ignore[list-item]


def _thread(server: http.server.HTTPServer) -> str:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(100):
        if process.poll() is not None:
            pytest.fail(f"{process.args!r} exited with {process.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    pytest.fail(f"{url} does not answer")


def nginx_config(folder: Path, root: Path, port: int) -> Path:
    """The README's snippet, with only `listen` and `root` set, in a minimal nginx.conf."""
    snippet = NGINX_SNIPPET.read_text()
    assert "listen 8080;" in snippet
    assert "root /srv/wheel-cache;" in snippet
    site = snippet.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    (folder / "site.conf").write_text(site.replace("/srv/wheel-cache", str(root)))
    temp = " ".join(
        f"{kind}_temp_path {folder}/{kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    (folder / "nginx.conf").write_text(
        f"user root;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log;\nevents {{}}\n"
        f"http {{\n  include /etc/nginx/mime.types;\n  {temp}\n"
        f"  uwsgi_temp_path {folder}/uwsgi; scgi_temp_path {folder}/scgi;\n"
        "  log_format clients '$http_user_agent\\t$uri\\t$sent_http_content_type';\n"
        f"  access_log {folder}/access.log clients;\n  include {folder}/site.conf;\n}}\n"
    )
    return folder / "nginx.conf"


def pre_pep714_copy(root: Path, folder: Path) -> Path:
    """The published platforms, with JSON pages that also carry `dist-info-metadata`
    as a mapping, as PyPI did before PEP 714."""
    for platform in (AMD, ARM):
        shutil.copytree(root / platform, folder / platform)
        for page in (folder / platform).glob("simple/*/index.json"):
            data = json.loads(page.read_text())
            for entry in data["files"]:
                entry["dist-info-metadata"] = entry["core-metadata"]
            page.write_text(json.dumps(data))
    return folder


@pytest.fixture(scope="module")
def servers(
    local: Local, build_report: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    root = Path(str(local.matrix.index.root))
    if shutil.which("nginx") is None:
        pytest.fail("nginx is missing: the host needs `scripts/setup-host --test`")
    folder = tmp_path_factory.mktemp("servers")
    ours = make_server(root, "127.0.0.1", 0, Recording)
    old = make_server(pre_pep714_copy(root, folder / "old"), "127.0.0.1", 0)
    static_port, nginx_port = _free_port(), _free_port()
    static = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(static_port), "--bind", "127.0.0.1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    conf = nginx_config(folder, root, nginx_port)
    nginx = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(folder), "-g", "daemon off;"])
    urls = {
        "ours": _thread(ours),
        "pre-pep714": _thread(old),
        "static": f"http://127.0.0.1:{static_port}/",
        "nginx": f"http://127.0.0.1:{nginx_port}/",
    }
    try:
        _wait(urls["static"], static)
        _wait(urls["nginx"], nginx)
        yield Servers(urls, folder / "access.log")
    finally:
        for server in (ours, old):
            server.shutdown()
        for process in (static, nginx):
            process.terminate()
            process.wait(timeout=10)


def _requirements(report: dict[str, Any], platform: str) -> list[list[str]]:
    jobs = {str(j["job"]): j for j in report["jobs"]}
    return [
        [pin, str(jobs[f"{platform}/{pin}"]["sha256"])]
        for pin in ("crcmod==1.7", "simplegeneric==0.8.1")
    ]


@pytest.fixture(scope="module", params=[AMD, ARM])
def runs(
    request: pytest.FixtureRequest, servers: Servers, local: Local, build_report: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every client's attempts in the platform's builder: one container, JSON lines."""
    platform = str(request.param)
    arch = platform.rsplit("-", 1)[1]
    simple = {name: f"{url}{platform}/simple/" for name, url in servers.urls.items()}
    # How a server answers and how a client reads its pages do not depend on the
    # client's arch, so the static servers (HTML only, nginx's negotiation) and the
    # pre-PEP 714 pages are left to amd64: under emulation each install costs seconds.
    # arm64 keeps what does depend on it: choosing the arm64 wheels, with and without
    # their hashes.
    servers_here = ("ours", "static", "nginx") if arch == "amd64" else ("ours",)
    clients = CLIENTS if arch == "amd64" else {name: CLIENTS[name] for name in ARM_CLIENTS}
    attempts = [[name, simple[name], hashes] for name in servers_here for hashes in (False, True)]
    if arch == "amd64":
        attempts.append(["pre-pep714", simple["pre-pep714"], False])
    config = {
        "python": "/usr/bin/python3.11",
        "tool_pip": "/opt/orchestrate/py3.11/bin/pip",
        "attempts": attempts,
        "requirements": _requirements(build_report, platform),
        "imports": ["crcmod._crcfunext", "simplegeneric"],
        "clients": clients,
    }
    image = image_tag(local.matrix, next(p for p in expand(local.matrix) if p.name == platform))
    done = subprocess.run(
        [
            *("docker", "run", "--rm", "-i", "--network", "host", "--platform", f"linux/{arch}"),
            *(image, "python3.11", "-", json.dumps(config)),
        ],
        stdin=DRIVER.open("rb"),
        capture_output=True,
        check=False,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    results = [
        {**json.loads(line), "platform": platform} for line in done.stdout.decode().splitlines()
    ]
    assert len(results) == len(clients) * len(attempts)
    return results


def test_every_client_installs_from_every_server(runs: list[dict[str, Any]]) -> None:
    failed = [r for r in runs if r["server"] != "pre-pep714" and r["code"] != 0]
    assert not failed, "\n\n".join(
        f"{r['client']} {r['version']} from {r['server']} (hashes: {r['hashes']}):\n{r['output']}"
        for r in failed
    )


def test_the_clients_are_the_versions_users_have(runs: list[dict[str, Any]]) -> None:
    versions = {r["client"]: r["version"] for r in runs}
    amd64 = runs[0]["platform"] == AMD
    assert set(versions) == (set(CLIENTS) if amd64 else set(ARM_CLIENTS))
    assert {c: versions[c] for c in VERSIONS if c in versions} == {
        c: v for c, v in VERSIONS.items() if c in versions
    }
    assert not amd64 or int(versions["latest"].split(".")[0]) >= 25
    assert versions["uv"]


def test_json_goes_to_the_clients_that_ask_for_it(
    runs: list[dict[str, Any]], servers: Servers
) -> None:
    """From ours and from nginx: project pages as JSON to pip >= 22.2 and uv, HTML to
    the older pips; so both forms were installed from."""
    pages = [
        (agent, kind)
        for agent, path, kind in servers.served()
        if "/simple/crcmod/" in path and not path.endswith((".whl", ".metadata"))
    ]
    clients = {r["client"]: r["version"] for r in runs}
    assert len(clients) >= 2, runs  # a loop over nothing would pass by accident
    assert pages, "no client asked for a crcmod page"
    for client, version in clients.items():
        agent = f"uv/{version}" if client == "uv" else f"pip/{version}"
        kinds = {kind for a, kind in pages if a.startswith(agent)}
        want = "application/vnd.pypi.simple.v1+json" if client in ASKS_JSON else "text/html"
        assert kinds, f"{client} asked for no crcmod page"
        assert all(k.startswith(want) for k in kinds), (client, kinds)


def test_the_pre_pep714_key_breaks_debian_12s_pip_and_no_other(
    runs: list[dict[str, Any]],
) -> None:
    """What PEP 714 says, checked: why our JSON pages carry only `core-metadata`."""
    if runs[0]["platform"] != AMD:
        pytest.skip("a client reads pages the same way on every arch: amd64 checks it")
    old = {r["client"]: r for r in runs if r["server"] == "pre-pep714"}
    assert {c for c, r in old.items() if r["code"] != 0} == {"debian-12"}
    assert "unhashable type: 'dict'" in old["debian-12"]["output"]
