"""Build contexts for test services; no image can be pulled, so we make our own.

The registry image is `FROM scratch` with Debian's docker-registry binary and
the shared libraries `ldd` says it needs, so it builds offline.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import bcrypt

REGISTRY_USER = "ci-user"
REGISTRY_PASSWORD = "s3cret-Pa55"  # test-only credential for a throwaway registry


def registry_context(root: Path) -> Path:
    """A compose project with two registries: `open` and `auth` (htpasswd)."""
    ctx = root / "registry"
    ctx.mkdir(parents=True, exist_ok=True)
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is not installed: run sudo scripts/setup-host --test")
    copies = [(Path(binary), "/bin/registry"), *((lib, str(lib)) for lib in _libraries(binary))]
    lines = ["FROM scratch"]
    for i, (src, dest) in enumerate(copies):
        shutil.copy(src, ctx / f"f{i}")
        lines.append(f"COPY f{i} {dest}")
    lines += [
        "COPY config.yml /etc/registry.yml",
        "COPY htpasswd /etc/htpasswd",
        'ENTRYPOINT ["/bin/registry", "serve", "/etc/registry.yml"]',
    ]
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
    (ctx / "config.yml").write_text(
        textwrap.dedent("""\
        version: 0.1
        log: {level: warn}
        storage: {filesystem: {rootdirectory: /var/lib/registry}, delete: {enabled: true}}
        http: {addr: ":5000"}
        """)
    )
    hashed = bcrypt.hashpw(REGISTRY_PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    (ctx / "htpasswd").write_text(f"{REGISTRY_USER}:{hashed}\n")
    compose = root / "docker-compose.yml"
    compose.write_text(
        textwrap.dedent(f"""\
        version: "2.4"
        services:
          open:
            build: {ctx}
            image: orchestrate-test-registry:latest
            ports: ["5000"]
          auth:
            image: orchestrate-test-registry:latest
            depends_on: [open]
            ports: ["5000"]
            environment:
              REGISTRY_AUTH: htpasswd
              REGISTRY_AUTH_HTPASSWD_REALM: orchestrate-tests
              REGISTRY_AUTH_HTPASSWD_PATH: /etc/htpasswd
        """)
    )
    return compose


def _libraries(binary: str) -> list[Path]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0] if parts else ""
        if path.startswith("/"):
            libs.append(Path(path))
    return libs
