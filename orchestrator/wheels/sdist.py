"""Does an sdist look pure Python? Decides whether its platforms share one build.

Making every platform wait for one lead build only pays when the result is a
`py3-none-any` wheel; for a C extension it would serialize work that could
run in parallel. Before building, we read the sdist's member names: no
compiled sources (C, C++, Cython, Fortran, Rust, Go) and no meson or Cargo
build means it very likely builds a pure wheel. A wrong guess is safe either
way: a follower whose lead did not give a pure wheel builds for itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import requests

COMPILED = (".c", ".cc", ".cpp", ".cxx", ".pyx", ".pxd", ".f", ".f90", ".rs", ".go", ".m")
BUILD_FILES = ("meson.build", "Cargo.toml", "CMakeLists.txt")


def member_names(data: bytes, filename: str) -> list[str]:
    if filename.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.namelist()
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return archive.getnames()


def names_look_pure(names: list[str]) -> bool:
    for name in names:
        base = name.rsplit("/", 1)[-1]
        if base.lower().endswith(COMPILED) or base in BUILD_FILES:
            return False
    return True


def looks_pure(url: str, filename: str, cache: Path, timeout: float = 60) -> bool | None:
    """True/False from the sdist's contents; None when it cannot be read (assume not)."""
    key = cache / f"{hashlib.sha256(url.encode()).hexdigest()[:24]}.json"
    try:
        return bool(json.loads(key.read_text())["pure"])
    except (OSError, ValueError, KeyError):
        pass
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        pure = names_look_pure(member_names(response.content, filename))
    except (requests.RequestException, tarfile.TarError, zipfile.BadZipFile, OSError):
        return None
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text(json.dumps({"url": url, "pure": pure}))
    return pure
