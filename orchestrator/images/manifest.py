"""Push per-arch builder tags and join each release's arches into one manifest list."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config import Matrix
from orchestrator.config.matrix import Platform
from orchestrator.core.errors import RegistryError
from orchestrator.engines import Engine
from orchestrator.images.build import image_tag
from orchestrator.images.registry import ManifestRef, Registry, RegistryClient
from orchestrator.images.registry.push import BlobCache, push_image
from orchestrator.model import Arch


@dataclass(frozen=True, kw_only=True)
class ManifestResult:
    release: str
    tag: str
    status: str  # published | unchanged | held | partial
    arches: tuple[str, ...]
    missing: tuple[str, ...]
    digest: str = ""

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def client_for(matrix: Matrix) -> RegistryClient:
    return RegistryClient(Registry(matrix.registry.url, matrix.registry.insecure))


def push_platform(
    client: RegistryClient,
    matrix: Matrix,
    platform: Platform,
    engine: Engine,
    *,
    blobs: Path,
    on_line: Callable[[str], None],
) -> ManifestRef:
    """The builder pushed under its per-arch tag, unless the registry has it already.
    Pushed by us from an engine on this host (the faster compression, `push.py`); by
    the engine itself from another host, so the layers go from there to the registry
    rather than through this one."""
    tag = image_tag(matrix, platform)
    repo = matrix.registry.repository
    if engine.url.startswith("unix://"):
        cache = BlobCache(blobs, matrix.registry.url)
        return push_image(
            client, engine, tag, repo=repo, tag=platform.name, cache=cache, on_line=on_line
        )
    local = engine.image(tag)
    if local and client.config_digest(repo, platform.name) == local.id:
        current = client.manifest(repo, platform.name)
        if current is not None:
            on_line(f"{tag}: registry already has {current.digest}")
            return current
    digest = engine.push(tag, on_line)
    pushed = client.manifest(repo, digest)
    if pushed is None:
        raise RegistryError(f"pushed {tag} as {digest} but the registry does not show it")
    return pushed


def publish_release(
    client: RegistryClient,
    matrix: Matrix,
    release: str,
    arches: Sequence[Arch],
    *,
    pushed: dict[Arch, ManifestRef],
    allow_partial: bool,
) -> ManifestResult:
    """One manifest list per release; held back when an arch is missing, unless asked."""
    repo = matrix.registry.repository
    tag = f"{matrix.registry.url}/{repo}:{release}"
    missing = tuple(a.value for a in arches if a not in pushed)
    have = tuple(a.value for a in arches if a in pushed)
    if not pushed or (missing and not allow_partial):
        return ManifestResult(release=release, tag=tag, status="held", arches=have, missing=missing)
    wanted = {a.value: ref.digest for a, ref in pushed.items()}
    if client.index(repo, release) == wanted:
        return ManifestResult(
            release=release, tag=tag, status="unchanged", arches=have, missing=missing
        )
    digest = client.put_index(repo, release, sorted(pushed.items(), key=lambda e: e[0].value))
    return ManifestResult(
        release=release,
        tag=tag,
        status="partial" if missing else "published",
        arches=have,
        missing=missing,
        digest=digest,
    )
