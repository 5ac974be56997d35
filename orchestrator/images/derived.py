"""Images made from another by one small Dockerfile (packages added), found by a tag
of the Dockerfile's hash: made once per parent and package set on an engine."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

from orchestrator.engines import Engine, ImageBuildRequest
from orchestrator.images.render import deterministic_tar
from orchestrator.model import Arch

LABEL_PACKAGES = "org.orchestrate.job-packages"
# Docker's predefined proxy build args: kept out of the image and its history.
PROXY_ARGS = frozenset(
    n for name in ("http_proxy", "https_proxy", "no_proxy") for n in (name, name.upper())
)


def derived_image(
    engine: Engine,
    dockerfile: str,
    name: str,
    arch: Arch,
    *,
    packages: tuple[str, ...],
    env: Mapping[str, str],
    on_line: Callable[[str], None],
) -> str:
    """The ID of the image `dockerfile` makes (one FROM, packages installed), found by
    a tag of its hash when made before."""
    tag = f"{name}:{hashlib.sha256(dockerfile.encode()).hexdigest()[:16]}"
    # The tag names the parent image and the packages: made once, found by its tag. (The
    # classic builder probes its layer cache with the host platform and misses for a
    # foreign-arch parent: https://github.com/moby/moby/issues/49947, fixed in 2026.)
    made = engine.image(tag)
    if made is not None:
        on_line(f"{tag}: made before ({made.id[:19]}), reused")
        return made.id
    request = ImageBuildRequest(
        tag=tag,
        context=deterministic_tar({"Dockerfile": dockerfile.encode()}),
        platform=arch,
        labels={LABEL_PACKAGES: " ".join(packages)},
        buildargs={k: v for k, v in env.items() if k in PROXY_ARGS},
    )
    return engine.build(request, on_line)
