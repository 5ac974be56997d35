"""A small client of the OCI distribution API (registry HTTP API v2).

docker-py has no manifest-list API, and `docker push` compresses slowly (see
`push.py`), so pushing builders and image indexes and asking a registry about
itself go through this client. Credentials come from the Docker config
(`~/.docker/config.json` or `$DOCKER_CONFIG`) and are never printed or logged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin

import requests

from orchestrator.core.errors import RegistryError
from orchestrator.model import Arch

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT_ALL = ", ".join((DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX))


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
            hint="start the local one with: sudo orchestrate setup-host; or fix registry.url",
        ) from None
    if response.status_code == 401:
        return "auth required"
    if response.status_code != 200:
        raise RegistryError(f"registry {registry.host} answered HTTP {response.status_code}")
    return "ok"


@dataclass(frozen=True)
class ManifestRef:
    digest: str
    size: int
    media_type: str


class RegistryClient:
    """Manifests through the registry HTTP API v2, with Basic or Bearer-token auth."""

    def __init__(self, registry: Registry, timeout: float = 30.0) -> None:
        self.registry = registry
        self.timeout = timeout
        self._session = requests.Session()
        self._auth_header: str | None = None

    def _request(
        self,
        method: str,
        path: str,
        repo: str,
        headers: dict[str, str] | None = None,
        *,
        data: bytes | BinaryIO | None = None,
    ) -> requests.Response:
        """`path` under /v2/, or a Location the registry gave (absolute, or from /).
        A file as `data` is sent once: the request before it must have authenticated."""
        url = urljoin(self.registry.base, path)
        headers = dict(headers or {})
        for attempt in range(2):
            if self._auth_header:
                headers["Authorization"] = self._auth_header
            try:
                response = self._session.request(
                    method, url, headers=headers, data=data, timeout=self.timeout
                )
            except requests.RequestException as exc:
                raise RegistryError(
                    f"registry {self.registry.host} is not reachable: {type(exc).__name__}",
                    hint="check registry.url; start the local one with sudo orchestrate setup-host",
                ) from None
            if response.status_code != 401 or attempt:
                return response
            self._auth_header = self._authenticate(response, repo)
        return response

    def _authenticate(self, response: requests.Response, repo: str) -> str:
        creds = docker_credentials(self.registry.host)
        if creds is None:
            raise RegistryError(
                f"registry {self.registry.host} requires authentication",
                hint=f"docker login {self.registry.host}",
            )
        challenge = response.headers.get("WWW-Authenticate", "")
        basic = "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        if challenge.lower().startswith("basic"):
            return basic
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        params.setdefault("scope", f"repository:{repo}:pull,push")
        try:
            token = self._session.get(
                realm, params=params, timeout=self.timeout, headers={"Authorization": basic}
            )
        except requests.RequestException as exc:
            raise RegistryError(
                f"token service {realm} not reachable: {type(exc).__name__}"
            ) from None
        if token.status_code != 200:
            raise RegistryError(
                f"registry {self.registry.host} refused the credentials (HTTP {token.status_code})",
                hint=f"docker login {self.registry.host}",
            )
        body = token.json()
        return "Bearer " + str(body.get("token") or body.get("access_token"))

    def manifest(self, repo: str, reference: str) -> ManifestRef | None:
        response = self._request(
            "HEAD", f"{repo}/manifests/{reference}", repo, headers={"Accept": ACCEPT_ALL}
        )
        if response.status_code == 404:
            return None
        _check(response, f"reading manifest {repo}:{reference}")
        return ManifestRef(
            response.headers["Docker-Content-Digest"],
            int(response.headers.get("Content-Length", "0")),
            response.headers.get("Content-Type", DOCKER_MANIFEST).split(";")[0],
        )

    def config_digest(self, repo: str, reference: str) -> str | None:
        """The digest of the config (the engine's image ID) of a single-arch image."""
        body = self._manifest_json(repo, reference, f"{DOCKER_MANIFEST}, {OCI_MANIFEST}")
        config = (body or {}).get("config") or {}
        return str(config.get("digest") or "") or None

    def _manifest_json(self, repo: str, reference: str, accept: str) -> dict[str, Any] | None:
        response = self._request(
            "GET", f"{repo}/manifests/{reference}", repo, headers={"Accept": accept}
        )
        if response.status_code == 404:
            return None
        _check(response, f"reading {repo}:{reference}")
        body = response.json()
        return body if isinstance(body, dict) else None

    def has_blob(self, repo: str, digest: str) -> bool:
        response = self._request("HEAD", f"{repo}/blobs/{digest}", repo)
        if response.status_code == 404:
            return False
        _check(response, f"reading blob {repo}@{digest}")
        return True

    def mount_blob(self, repo: str, digest: str, source: str) -> bool:
        """Link a blob the registry holds for `source` into `repo`, without sending it.
        False when the registry does not (then it opens an upload, which is dropped)."""
        response = self._request(
            "POST", f"{repo}/blobs/uploads/?mount={digest}&from={source}", repo
        )
        if response.status_code == 201:
            return True
        if response.status_code == 202 and response.headers.get("Location"):
            self._request("DELETE", response.headers["Location"], repo)
        return False

    def upload_blob(self, repo: str, digest: str, content: BinaryIO, size: int) -> None:
        """One blob, in a monolithic upload (POST, then PUT with the digest)."""
        started = self._request("POST", f"{repo}/blobs/uploads/", repo)
        _check(started, f"starting an upload to {repo}")
        location = started.headers["Location"]
        joiner = "&" if "?" in location else "?"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        done = self._request(
            "PUT", f"{location}{joiner}digest={digest}", repo, headers, data=content
        )
        _check(done, f"uploading {digest} to {repo}")

    def put_manifest(self, repo: str, tag: str, body: bytes, media_type: str) -> ManifestRef:
        response = self._request(
            "PUT", f"{repo}/manifests/{tag}", repo, data=body, headers={"Content-Type": media_type}
        )
        _check(response, f"pushing manifest {repo}:{tag}")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        return ManifestRef(digest, len(body), media_type)

    def index(self, repo: str, tag: str) -> dict[str, str]:
        """arch → manifest digest of a manifest list or image index (empty if none)."""
        body = self._manifest_json(repo, tag, f"{DOCKER_LIST}, {OCI_INDEX}") or {}
        return {m["platform"]["architecture"]: m["digest"] for m in body.get("manifests", [])}

    def put_index(self, repo: str, tag: str, entries: Sequence[tuple[Arch, ManifestRef]]) -> str:
        """Publish a multi-arch list of `entries` under `tag`; returns its digest."""
        docker = all(ref.media_type == DOCKER_MANIFEST for _, ref in entries)
        media_type = DOCKER_LIST if docker else OCI_INDEX
        body = json.dumps(index_document(media_type, entries), indent=1).encode()
        return self.put_manifest(repo, tag, body, media_type).digest


def index_document(
    media_type: str, entries: Sequence[tuple[Arch, ManifestRef]]
) -> dict[str, object]:
    manifests = []
    for arch, ref in sorted(entries, key=lambda e: e[0].value):
        platform: dict[str, str] = {"architecture": arch.value, "os": "linux"}
        if arch == Arch.ARM64:
            platform["variant"] = "v8"
        manifests.append(
            {
                "mediaType": ref.media_type,
                "size": ref.size,
                "digest": ref.digest,
                "platform": platform,
            }
        )
    return {"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}


def _check(response: requests.Response, what: str) -> None:
    if response.status_code >= 400:
        raise RegistryError(f"{what} failed: HTTP {response.status_code} {response.text[:200]}")
