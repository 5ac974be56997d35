"""What an engine answers, read without docker-py: its arch names, its kind (Docker
or Podman), image references and the first line of a transport error."""

from __future__ import annotations

from orchestrator.model import Arch, EngineKind

# What engines report as their Architecture (uname -m, or Go's name), to OCI names.
MACHINE_TO_ARCH = {
    **{a.machine: a for a in Arch},
    **{a.value: a for a in Arch},
    "ppc64el": Arch.PPC64LE,
}
# Podman's answer to GET /version names a component "Podman Engine"; Docker's do not.
PODMAN_COMPONENT = "podman"


def kind_of(version: object) -> EngineKind:
    """Podman when its version answer names a Podman component; any other shape of
    answer (an engine's text is not ours) is read as Docker's."""
    components = version.get("Components") if isinstance(version, dict) else None
    listed = components if isinstance(components, list) else []
    names = [str(c.get("Name", "")) for c in listed if isinstance(c, dict)]
    podman = any(PODMAN_COMPONENT in name.lower() for name in names)
    return EngineKind.PODMAN if podman else EngineKind.DOCKER


def split_ref(ref: str) -> tuple[str, str]:
    """`host:5000/repo:tag` → (`host:5000/repo`, `tag`); the tag defaults to latest.
    `host:5000/repo@sha256:...` → (`host:5000/repo`, `sha256:...`): Docker's API takes
    a digest where it takes a tag."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, "latest"


def reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "Connection refused" in text or "No such file or directory" in text:
        return "connection refused (nothing listens there)"
    return text.splitlines()[0][:300]
