"""A job's extra system packages: the builder plus those packages, as an image.

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

from collections.abc import Callable, Mapping

from orchestrator.engines import Engine
from orchestrator.images.derived import derived_image
from orchestrator.images.sysdeps import install_dockerfile
from orchestrator.model import Arch

LABEL_PACKAGES = "org.orchestrate.job-packages"


def system_image(
    engine: Engine,
    builder: str,
    arch: Arch,
    family: str,
    *,
    packages: tuple[str, ...],
    env: Mapping[str, str],
    on_line: Callable[[str], None],
) -> str:
    """The ID of `builder` (an image ID on `engine`) with `packages` installed."""
    dockerfile = install_dockerfile(builder, family, packages)
    return derived_image(
        engine,
        dockerfile,
        "orchestrate-job-packages",
        arch,
        packages=packages,
        env=env,
        on_line=on_line,
    )
