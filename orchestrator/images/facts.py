"""What the images stage hands the wheels stage: typed facts, not files in a cache.

A builder's facts are its tag (for people and pulls), the image ID on each
engine that holds it, and what its probe measured inside it: the Python
tags pip accepts there, and the glibc version.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ImageFacts:
    platform: str
    ref: str  # registry/repository:platform
    ids: Mapping[str, str]  # engine name -> image ID
    tags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # python -> sys_tags()
    glibc: str = ""
    pull_ref: str = ""  # repo@sha256:... when the registry has this image


def parse_probe(text: str | bytes) -> tuple[dict[str, tuple[str, ...]], str]:
    """The builder's /etc/orchestrate/probe.json: tags per Python, and glibc."""
    data = json.loads(text)
    tags = {str(k): tuple(str(t) for t in v) for k, v in dict(data.get("tags", {})).items()}
    return tags, str(data.get("glibc", ""))


class ProbeCache:
    """The last probe of each platform's builder, for `plan` runs that build no image."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def read(self, platform: str) -> dict[str, tuple[str, ...]]:
        try:
            tags, _ = parse_probe((self.folder / f"{platform}.json").read_text())
        except (OSError, ValueError, AttributeError):
            return {}
        return tags

    def write(self, platform: str, image_id: str, probe: Mapping[str, object]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{platform}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**probe, "image": image_id}, indent=1))
        tmp.replace(path)
