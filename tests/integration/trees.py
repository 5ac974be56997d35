"""An index root's served trees, compared as clients see them."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

HREF = re.compile(r'href="([^"#]+)#sha256=([0-9a-f]{64})"')


def served(root: Path) -> dict[str, dict[str, str]]:
    """Per platform, every served file's sha256; each listed file checked against its
    page's hash (the check the publish fault tests make)."""
    out: dict[str, dict[str, str]] = {}
    for link in sorted(p for p in root.iterdir() if p.is_symlink()):
        simple = link / "simple"
        files = {
            f.relative_to(simple).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(simple.rglob("*"))
            if f.is_file()
        }
        for page in simple.glob("*/index.html"):
            for href, digest in HREF.findall(page.read_text()):
                listed = f"{page.parent.name}/{href}"
                assert files.get(listed) == digest, f"{link.name}: {listed} is not as listed"
        out[link.name] = files
    return out


def comparable(tree: dict[str, str]) -> dict[str, str]:
    """Provenance statements name their run: compare their names, not their bytes."""
    return {k: ("statement" if k.endswith(".intoto.json") else v) for k, v in tree.items()}
