"""The engine interface: what the rest of the code may ask of a Docker engine.

Requests go in as values and outcomes come out as values. `docker.py` is the
only module that imports docker-py; a test engine can implement the same
protocol without Docker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Protocol

from orchestrator.model import Arch, EngineKind


@dataclass(kw_only=True, frozen=True)
class KindTraits:
    """What differs between engine kinds, for the adapter and for the scripts that
    `reproduce --print` writes: the CLI that talks to the engine, and the limits
    every container gets when the matrix sets none."""

    cli: str
    url_flag: str
    package: str  # Debian's package of the CLI
    ulimits: Mapping[str, int]


KIND_TRAITS = {
    EngineKind.DOCKER: KindTraits(cli="docker", url_flag="-H", package="docker.io", ulimits={}),
    # Podman asks runc for the host's own hard limits (nofile 1048576 and an
    # unlimited nproc here) by default; where the service may not raise to them,
    # as on this kind of host, every container fails to start with "error setting
    # rlimit type 7: operation not permitted". 1024 is what a login shell gets and
    # more than any build here opens.
    EngineKind.PODMAN: KindTraits(
        cli="podman", url_flag="--url", package="podman", ulimits={"nofile": 1024, "nproc": 1024}
    ),
}


@dataclass(kw_only=True, frozen=True)
class EngineInfo:
    """What an engine says about itself; the arch is read, never configured."""

    name: str
    url: str
    kind: EngineKind
    rootless: bool
    server_version: str
    api_version: str
    arch: Arch | None
    machine: str
    kernel: str
    engine_id: str
    data_root: str


@dataclass(frozen=True)
class ImageInfo:
    id: str
    arch: str
    labels: Mapping[str, str]
    repo_digests: tuple[str, ...]
    layers: tuple[str, ...] = ()  # the diff IDs (digests of the layers' tars), in order


@dataclass(frozen=True)
class ImageBuildRequest:
    """Build one image from a tar context for one platform."""

    tag: str
    context: bytes
    platform: Arch
    labels: Mapping[str, str] = field(default_factory=dict)
    pull: bool = False
    nocache: bool = False
    # Only Docker's predefined proxy args belong here: the engine keeps them out of
    # the image and its history, so they may carry credentials.
    buildargs: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(kw_only=True, frozen=True)
class ImageLoadRequest:
    """One image of one layer, `files` (a tar of a root file system), for one
    platform: what `docker import` makes, but saying `platform`'s arch."""

    tag: str
    files: bytes = field(repr=False)
    platform: Arch
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(kw_only=True, frozen=True)
class RunRequest:
    """One container: image, command and the limits it runs under."""

    image: str
    command: tuple[str, ...]
    platform: Arch
    env: Mapping[str, str] = field(default_factory=dict)
    network: bool = True
    user: str | None = None
    workdir: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None
    keep: bool = False  # keep the container after it stops, for inspection
    # Folders on a RAM file system (tmpfs) whose programs run and whose device nodes
    # open: never written to disk, gone with the container. `Container.get` does not
    # see into them: the engine copies from the container's own file system.
    ram: tuple[str, ...] = ()
    interactive: bool = False  # a terminal and stdin, for `attach_terminal`


@dataclass(frozen=True)
class RunResult:
    exit_code: int | None  # None when it was killed on timeout
    duration: float
    timed_out: bool


class Container(Protocol):
    """A created container; the engine's context manager removes it."""

    id: str

    def put(self, path: str, tar: bytes) -> None: ...

    def get(self, path: str) -> bytes: ...

    def start_and_wait(
        self, timeout: float | None, on_output: Callable[[bytes], None]
    ) -> RunResult: ...

    def kill(self) -> None: ...

    def commit(self, labels: Mapping[str, str]) -> str:
        """Its filesystem as a new image (its ID): the container's config plus `labels`."""
        ...

    def attach_terminal(self) -> int:
        """Start it with this process's terminal attached (an `interactive` request);
        its exit code when it ends."""
        ...


class Engine(Protocol):
    name: str
    url: str
    slots: int

    @property
    def kind(self) -> EngineKind: ...

    def info(self) -> EngineInfo: ...

    def build(self, request: ImageBuildRequest, on_line: Callable[[str], None]) -> str: ...

    def load(self, request: ImageLoadRequest) -> str:
        """The image of `request.files`, tagged; its ID."""
        ...

    def image(self, ref: str) -> ImageInfo | None: ...

    def tag(self, image: str, ref: str) -> None: ...

    def push(self, ref: str, on_line: Callable[[str], None]) -> str:
        """The engine's own push of `ref`; the registry's digest of it."""
        ...

    def save(self, ref: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """The image as `docker save` writes it (a docker-archive tar), streamed."""
        ...

    def pull(self, ref: str, platform: Arch, on_line: Callable[[str], None]) -> None: ...

    def container(self, request: RunRequest) -> contextlib.AbstractContextManager[Container]: ...

    def containers(self, label: str) -> list[str]: ...

    def remove_image(self, image: str) -> None:
        """Remove an image this run made; one still in use stays, silently."""
        ...

    def close(self) -> None: ...


def run_to_end(
    engine: Engine, request: RunRequest, timeout: float | None = None
) -> tuple[RunResult, bytes]:
    """Run a container to completion and collect its output."""
    chunks: list[bytes] = []
    with engine.container(request) as box:
        outcome = box.start_and_wait(timeout, chunks.append)
    return outcome, b"".join(chunks)
