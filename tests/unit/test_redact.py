"""Credentials are redacted in every line the CLI prints, and in reports and logs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.core.redact import redact, redact_bytes
from tests.conftest import CliRunner

Write = Callable[[str, str], Path]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:s3cret@pypi.example/simple/", "https://user:****@pypi.example/simple/"),
        ("proxy http://bob:pa%40ss@proxy:3128 down", "proxy http://bob:****@proxy:3128 down"),
        ("ssh://root:hunter2@10.0.0.5:22", "ssh://root:****@10.0.0.5:22"),
        ("https://ghp_TOKEN123@github.example/x", "https://****@github.example/x"),
        ("ssh://root@127.0.0.1:2222", "ssh://****@127.0.0.1:2222"),
        ("no url here, just user@example.org", "no url here, just user@example.org"),
        ("https://pypi.org/simple/", "https://pypi.org/simple/"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_bytes_keeps_undecodable_bytes() -> None:
    data = b"\xff\xfe https://u:p@h/ \x00"
    assert redact_bytes(data) == b"\xff\xfe https://u:****@h/ \x00"


def test_cli_errors_never_print_the_password(cli: CliRunner, write: Write) -> None:
    matrix = write(
        "m.yaml",
        """
        version: 1
        registry: {url: 127.0.0.1:5000, repository: orchestrate/builder}
        index:
          upstream: "http://ci:s3cret-pass@127.0.0.1:9/simple/"
          root: wheels
        distros:
          - {name: debian, release: bookworm, family: deb, base: "debian:bookworm",
             python: ["3.11"], glibc: "2.36", arches: [amd64]}
        """,
    )
    reqs = write("r.txt", "six==1.16.0\n")
    result = cli("plan", "-m", str(matrix), "-r", str(reqs))
    assert result.code == 3, result.err
    assert "s3cret-pass" not in result.out + result.err
    assert "ci:****@127.0.0.1:9" in result.err


def test_no_credential_is_baked_into_an_image_and_fetch_gets_them_at_run_time(
    write: Write,
) -> None:
    from orchestrator.config import load_matrix
    from orchestrator.config.matrix import expand
    from orchestrator.images.render import render

    matrix = load_matrix(
        write(
            "m.yaml",
            """
            version: 1
            registry: {url: 127.0.0.1:5000, repository: orchestrate/builder}
            builder:
              proxy: {http: "http://bob:proxy-pw@proxy:3128", https: "http://bob:proxy-pw@proxy:3128",
                      no_proxy: "localhost,127.0.0.1"}
              pip: {index_url: "https://ci:pip-pw@pypi.example/simple/",
                    extra_index_urls: ["https://token-pw@extra.example/simple/"]}
            distros:
              - {name: debian, release: bookworm, family: deb, base: "debian:bookworm",
                 python: ["3.11"], glibc: "2.36", arches: [amd64]}
            """,
        )
    )
    rendered = render(expand(matrix)[0], matrix)
    baked = rendered.dockerfile + "".join(
        d.decode(errors="replace") for d in rendered.files.values()
    )
    for secret in ("proxy-pw", "pip-pw", "token-pw", "proxy:3128"):
        assert secret not in baked
    assert "index-url = https://pypi.example/simple/" in rendered.files["pip.conf"].decode()
    env = matrix.builder.fetch_environment()
    assert env["HTTPS_PROXY"] == env["https_proxy"] == "http://bob:proxy-pw@proxy:3128"
    assert env["PIP_INDEX_URL"] == "https://ci:pip-pw@pypi.example/simple/"
    assert env["no_proxy"] == "localhost,127.0.0.1"
