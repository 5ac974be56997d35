"""Make real, installable wheels for tests (a valid zip with METADATA and RECORD)."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def make_wheel(
    folder: Path,
    name: str,
    version: str,
    tag: str = "py3-none-any",
    *,
    body: str = "VALUE = 1\n",
    requires_python: str | None = ">=3.8",
    requires: tuple[str, ...] = (),
    entry_points: str = "",
) -> Path:
    """A pure module `<name>` that pip can install; `body` changes its bytes."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    if requires_python:
        metadata += f"Requires-Python: {requires_python}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {
        f"{module}/__init__.py": body,
        f"{dist}/METADATA": metadata,
        f"{dist}/WHEEL": f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        f"Tag: {tag}\n",
    }
    if entry_points:
        files[f"{dist}/entry_points.txt"] = entry_points
    record = []
    for member, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{member},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{module}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            info = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, text)
    return path


def make_sdist(
    folder: Path,
    name: str,
    version: str,
    requires: tuple[str, ...] = ("setuptools>=61",),
    *,
    setup_py: str | None = None,
    body: str = "VALUE = 1\n",
    extra: dict[str, str] | None = None,
) -> Path:
    """A pure-Python setuptools sdist `<name>-<version>.tar.gz` with the given
    `build-system.requires`; `setup_py` replaces the (empty) setup.py, e.g. to fail;
    `extra` adds files (e.g. C sources for an extension)."""
    import io
    import tarfile

    module = name.replace("-", "_")
    root = f"{module}-{version}"
    listed = ", ".join(f'"{r}"' for r in requires)
    files = {
        "pyproject.toml": (
            f'[build-system]\nrequires = [{listed}]\nbuild-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\n'
        ),
        "setup.py": setup_py or "from setuptools import setup\nsetup()\n",
        f"{module}/__init__.py": body,
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        **(extra or {}),
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{root}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{member}")
            info.size, info.mtime, info.mode = len(data), 315532800, 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def simple_index(
    root: Path,
    files: list[Path],
    yanked: tuple[str, ...] = (),
    requires_python: dict[str, str] | None = None,
) -> str:
    """A PEP 503 folder index (`<root>/<project>/index.html`) of `files` (sdists or
    wheels), with PEP 592 yanked files and data-requires-python; its file:// URL."""
    import html

    from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

    links: dict[str, list[str]] = {}
    for path in files:
        parse = parse_wheel_filename if path.name.endswith(".whl") else parse_sdist_filename
        project = canonicalize_name(parse(path.name)[0])
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        attrs = ' data-yanked=""' if path.name in yanked else ""
        needs = (requires_python or {}).get(path.name)
        if needs:
            attrs += f' data-requires-python="{html.escape(needs)}"'
        links.setdefault(project, []).append(
            f'<a href="{path.as_uri()}#sha256={digest}"{attrs}>{path.name}</a>'
        )
    for name, anchors in links.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        body = "<br/>".join(anchors)
        (folder / "index.html").write_text(f"<!DOCTYPE html><html><body>{body}</body></html>\n")
    return root.as_uri() + "/"
