"""A small client of the OCI distribution API (registry HTTP API v2).

docker-py has no manifest-list API, so pushing an image index and asking a
registry about itself go through this client. Credentials come from the
Docker config (`~/.docker/config.json` or `$DOCKER_CONFIG`) and are never
printed or logged.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

import requests

from orchestrator.errors import RegistryError


@dataclass(frozen=True)
class Registry:
    host: str  # host[:port]
    insecure: bool = False

    @property
    def base(self) -> str:
        scheme = "http" if self.insecure or _loopback(self.host) else "https"
        return f"{scheme}://{self.host}/v2/"


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in {"localhost", "127.0.0.1", "[::1]"}


def docker_credentials(host: str) -> tuple[str, str] | None:
    """(user, password) for `host` from the Docker config's `auths`, if any."""
    config_dir = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        auths = json.loads((config_dir / "config.json").read_text()).get("auths", {})
    except (OSError, ValueError):
        return None
    for key in (host, f"https://{host}", f"http://{host}"):
        encoded = (auths.get(key) or {}).get("auth")
        if encoded:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
            return user, password
    return None


def ping(registry: Registry, timeout: float = 5.0) -> str:
    """'ok', or 'auth required' when the registry answers 401; raises when unreachable."""
    try:
        response = requests.get(registry.base, timeout=timeout)
    except requests.RequestException as exc:
        raise RegistryError(
            f"registry {registry.host} is not reachable: {type(exc).__name__}",
            hint="start the local one with: sudo scripts/setup-host; or fix registry.url",
        ) from None
    if response.status_code == 401:
        return "auth required"
    if response.status_code != 200:
        raise RegistryError(f"registry {registry.host} answered HTTP {response.status_code}")
    return "ok"
