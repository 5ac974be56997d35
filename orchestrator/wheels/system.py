"""A job's extra system packages (#15): the builder plus those packages, as an image.

The builder image keeps the common package list. A job whose overrides or
bindep name more gets them in one step before its fetch phase, with network
and as root: a tiny `FROM <builder ID>` build on the job's engine (so it
works the same on an ssh:// engine). That image is made once per
(builder, package set), however many jobs or nights need it.
The fetch and build phases then run in it as the build user, unchanged, and
the network-off build phase sees the packages. `reproduce` repeats the step.
The image is tagged with a hash of its Dockerfile (builder ID and packages), so
a later job finds it by that tag and does not build it again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

from orchestrator.config import Arch
from orchestrator.engines import BuildRequest, Engine
from orchestrator.images.render import deterministic_tar
from orchestrator.sysdeps import install_dockerfile

LABEL_PACKAGES = "org.orchestrate.job-packages"
# Docker's predefined proxy build args: kept out of the image and its history.
PROXY_ARGS = frozenset(
    n for name in ("http_proxy", "https_proxy", "no_proxy") for n in (name, name.upper())
)


def system_image(
    engine: Engine,
    builder: str,
    arch: Arch,
    family: str,
    packages: tuple[str, ...],
    env: Mapping[str, str],
    on_line: Callable[[str], None],
) -> str:
    """The ID of `builder` (an image ID on `engine`) with `packages` installed."""
    dockerfile = install_dockerfile(builder, family, packages)
    return derived_image(engine, dockerfile, "orchestrate-job-packages", arch, packages, env,
                         on_line)  # fmt: skip


def derived_image(
    engine: Engine,
    dockerfile: str,
    name: str,
    arch: Arch,
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
    request = BuildRequest(
        tag=tag,
        context=deterministic_tar({"Dockerfile": dockerfile.encode()}),
        platform=arch,
        labels={LABEL_PACKAGES: " ".join(packages)},
        buildargs={k: v for k, v in env.items() if k in PROXY_ARGS},
    )
    return engine.build(request, on_line)
