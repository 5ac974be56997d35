"""The pure parts of our own push: the layer's gzip, the export's config, the host's
record of blobs. Pushing to a real registry and pulling back is in
tests/integration/test_images.py and test_doctor.py."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from pathlib import Path

import pytest

from orchestrator.core.errors import RegistryError
from orchestrator.engines.archive import ChunkReader
from orchestrator.images.registry.push import Blob, BlobCache, _config, _gzip


def _tar_like(size: int) -> bytes:
    """Compressible bytes with some noise, as a layer's tar is."""
    words = b"usr/lib/python3/dist-packages/ " * 64
    return (words + os.urandom(256)) * (size // (len(words) + 256))


def test_gzip_gives_the_layer_back_with_its_digests_and_the_same_bytes_each_time(
    tmp_path: Path,
) -> None:
    layer = _tar_like(3 << 20)
    diff_id, blob = _gzip(io.BytesIO(layer), tmp_path / "a.gz")
    again_id, again = _gzip(io.BytesIO(layer), tmp_path / "b.gz")
    packed = (tmp_path / "a.gz").read_bytes()
    assert gzip.decompress(packed) == layer
    assert diff_id == again_id == f"sha256:{hashlib.sha256(layer).hexdigest()}"
    assert (
        blob
        == again
        == Blob(
            digest=f"sha256:{hashlib.sha256(packed).hexdigest()}",
            size=len(packed),
            tar_size=len(layer),
        )
    )
    assert packed == (tmp_path / "b.gz").read_bytes()
    assert packed[4:8] == b"\0\0\0\0"  # no time in the header


def test_the_config_is_the_one_manifest_json_names() -> None:
    config = b'{"rootfs": {"diff_ids": []}}'
    jsons = {
        "abc/json": b'{"id": "abc"}',  # a legacy per-layer file
        "f00.json": config,
        "manifest.json": json.dumps([{"Config": "f00.json", "Layers": []}]).encode(),
    }
    assert _config(jsons) == config
    with pytest.raises(RegistryError, match=r"no manifest\.json"):
        _config({"f00.json": config})


def test_blob_cache_keeps_blobs_per_registry_and_configs_by_their_digest(
    tmp_path: Path,
) -> None:
    here, there = BlobCache(tmp_path, "127.0.0.1:5000"), BlobCache(tmp_path, "other:443")
    blob = Blob(digest="sha256:" + "1" * 64, size=10, tar_size=40)
    here.put("sha256:" + "a" * 64, blob, "orchestrate/builder")
    assert here.get("sha256:" + "a" * 64) == (blob, "orchestrate/builder")
    assert there.get("sha256:" + "a" * 64) is None
    config = b'{"architecture": "arm64"}'
    image_id = f"sha256:{hashlib.sha256(config).hexdigest()}"
    here.put_config(config)
    assert here.config(image_id) == config
    (tmp_path / f"config-{image_id[7:]}.json").write_bytes(b"{}")  # damaged: not trusted
    assert here.config(image_id) is None
    (here.folder / "blobs-127.0.0.1_5000.json").write_text("not json")
    assert here.get("sha256:" + "a" * 64) is None  # lost: the layer is compressed again


def test_chunk_reader_reads_across_chunks_in_any_size() -> None:
    chunks = [b"abc", b"", b"defgh", b"i"]
    reader = io.BufferedReader(ChunkReader(iter(chunks)), 4)
    assert reader.read(2) == b"ab"
    assert reader.read(5) == b"cdefg"
    assert reader.read() == b"hi"
    assert reader.read() == b""


class _ShortReads(io.RawIOBase):
    """A source that answers each read with a few thousand bytes at most."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        size = min(len(buffer), 3001, len(self._data))
        buffer[:size] = self._data[:size]
        self._data = self._data[size:]
        return size


def test_gzip_is_the_same_bytes_however_the_reads_come_and_for_an_empty_layer(
    tmp_path: Path,
) -> None:
    layer = _tar_like((2 << 20) + 12345)
    _gzip(io.BytesIO(layer), tmp_path / "whole.gz")
    _gzip(_ShortReads(layer), tmp_path / "short.gz")  # type: ignore[arg-type]
    assert (tmp_path / "whole.gz").read_bytes() == (tmp_path / "short.gz").read_bytes()
    diff_id, blob = _gzip(io.BytesIO(b""), tmp_path / "empty.gz")
    assert gzip.decompress((tmp_path / "empty.gz").read_bytes()) == b""
    assert (diff_id, blob.tar_size) == (f"sha256:{hashlib.sha256(b'').hexdigest()}", 0)
