"""An image of one layer as the engines' `load` takes it: a root file system's tar
with its config, for a platform of our choosing.

`docker import` would take the same tar, but Docker 20.10 records the engine's own
arch in the image whatever platform is asked (fixed in 23.0:
https://github.com/moby/moby/pull/43103), and a foreign root must say its arch
for the builder that starts FROM it. An image build FROM scratch that ADDs the tar
says it, at the cost of sending the tar as a build context and copying it once
more. A docker-archive (`docker save`'s format, which Podman loads too) holds the
config as written here, so the layer is unpacked once.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.model import Arch

# What a FROM scratch build gives a Linux image: a later RUN finds its tools.
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_BLOCK = tarfile.BLOCKSIZE
# The image's one history entry: an image built FROM it lists it last.
HISTORY = "orchestrate: a root file system"


@dataclass(frozen=True, kw_only=True)
class ImageArchive:
    """A docker-archive of one image, as chunks to send: the image's ID is known
    before the engine loads it (the digest of its config)."""

    image_id: str
    chunks: tuple[bytes | memoryview, ...] = field(repr=False)

    def __iter__(self) -> Iterator[bytes | memoryview]:
        return iter(self.chunks)


def image_config(
    layer_digest: str, *, platform: Arch, labels: Mapping[str, str], created: str
) -> bytes:
    """The image's config (OCI image-spec's), canonical JSON."""
    config = {
        "architecture": platform.value,
        "config": {"Env": [DEFAULT_PATH], "Labels": dict(sorted(labels.items()))},
        "created": created,
        "history": [{"created": created, "created_by": HISTORY}],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def image_archive(
    layer: bytes, *, platform: Arch, labels: Mapping[str, str], created: str
) -> ImageArchive:
    """`layer` (an uncompressed tar of the file system) with its config and manifest,
    the layer sent as it is rather than copied into a new tar."""
    digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = image_config(digest, platform=platform, labels=labels, created=created)
    config_digest = hashlib.sha256(config).hexdigest()
    config_name = f"{config_digest}.json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": None, "Layers": ["layer.tar"]}])
    chunks = (
        _member("manifest.json", manifest.encode()),
        _member(config_name, config),
        _header("layer.tar", len(layer)),
        memoryview(layer),
        _padding(len(layer)) + b"\0" * (2 * _BLOCK),  # the archive's end
    )
    return ImageArchive(image_id=f"sha256:{config_digest}", chunks=chunks)


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)


def _member(name: str, data: bytes) -> bytes:
    return _header(name, len(data)) + data + _padding(len(data))


def archive_bytes(archive: ImageArchive) -> bytes:
    """The whole archive in one piece (for tests and small images)."""
    out = io.BytesIO()
    for chunk in archive:
        out.write(chunk)
    return out.getvalue()


class ChunkReader(io.RawIOBase):
    """A readable file over an iterator of chunks: an engine's streamed answer (an
    image export) for `tarfile`'s stream mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = memoryview(b"")  # a view: taking from it copies nothing

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._rest = memoryview(chunk)
        size = min(len(buffer), len(self._rest))
        buffer[:size] = self._rest[:size]
        self._rest = self._rest[size:]
        return size
