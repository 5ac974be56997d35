"""The one module that imports docker-py: our `Engine` on a Docker engine.

Every docker-py or transport exception is translated here into an
`EngineError` (or `RegistryError` for push/pull), so callers never see
docker-py's types.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import docker.errors
import docker.tls
import requests

from orchestrator.config import EngineSpec
from orchestrator.core.errors import (
    BuildStepFailed,
    EngineError,
    EnvironmentProblem,
    RegistryError,
)
from orchestrator.engines import BuildRequest, EngineInfo, ImageInfo, RunOutcome, RunRequest
from orchestrator.model import Arch

# What engines report as their Architecture (uname -m, or Go's name), to OCI names.
_MACHINE_TO_ARCH = {
    **{a.machine: a for a in Arch},
    **{a.value: a for a in Arch},
    "ppc64el": Arch.PPC64LE,
}
_TRANSPORT_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)
_UNREACHABLE_HINT = (
    "is the engine running? On this host: sudo orchestrate setup-host; "
    "for a remote engine check the url, ssh access and that dockerd runs there"
)


class DockerEngine:
    """A Docker engine reached over unix://, tcp:// (TLS) or ssh://."""

    def __init__(self, spec: EngineSpec, timeout: int = 120) -> None:
        self.name = spec.name
        self.url = spec.url
        self.slots = spec.slots
        self._spec = spec
        self._timeout = timeout
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    # -- connection ---------------------------------------------------------
    @property
    def api(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client.api

    def _connect(self) -> docker.DockerClient:
        kwargs: dict[str, Any] = {"base_url": self.url, "timeout": self._timeout}
        if self.url.startswith("ssh://"):
            # The ssh binary honours ~/.ssh/config, agents and known_hosts.
            kwargs["use_ssh_client"] = shutil.which("ssh") is not None
        tls = self._spec.tls
        if tls is not None:
            cert = (str(tls.client_cert), str(tls.client_key)) if tls.client_cert else None
            kwargs["tls"] = docker.tls.TLSConfig(
                client_cert=cert,
                ca_cert=str(tls.ca_cert) if tls.ca_cert else None,
                verify=tls.verify,
            )
        try:
            client = docker.DockerClient(**kwargs)
            client.api.ping()
        except _TRANSPORT_ERRORS as exc:
            raise EngineError(
                f"engine {self.name} at {self.url} does not answer: {_reason(exc)}",
                hint=_UNREACHABLE_HINT,
            ) from None
        return client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except EngineError:
            raise
        except _TRANSPORT_ERRORS as exc:
            raise EngineError(f"engine {self.name!r}: {what} failed: {_reason(exc)}") from None

    # -- facts ----------------------------------------------------------------
    def info(self) -> EngineInfo:
        with self._errors("reading version and info"):
            version = self.api.version()
            info = self.api.info()
        machine = str(info.get("Architecture", ""))
        return EngineInfo(
            name=self.name,
            url=self.url,
            server_version=str(version.get("Version", "?")),
            api_version=str(version.get("ApiVersion", "?")),
            arch=_MACHINE_TO_ARCH.get(machine),
            machine=machine,
            kernel=str(info.get("KernelVersion", "?")),
            engine_id=str(info.get("ID", "")),
            data_root=str(info.get("DockerRootDir", "")),
        )

    # -- images ---------------------------------------------------------------
    def build(self, request: BuildRequest, on_line: Callable[[str], None]) -> str:
        with self._errors(f"building {request.tag}"):
            stream = self.api.build(
                fileobj=io.BytesIO(request.context),
                custom_context=True,
                tag=request.tag,
                labels=dict(request.labels),
                platform=request.platform.oci_platform,
                pull=request.pull,
                nocache=request.nocache,
                buildargs=dict(request.buildargs) or None,
                rm=True,
                forcerm=True,
                decode=True,
            )
            for chunk in stream:
                if "error" in chunk:
                    on_line(str(chunk["error"]))
                    raise BuildStepFailed(
                        f"build of {request.tag} on {self.name!r} failed: "
                        f"{str(chunk['error']).strip()}"
                    )
                text = chunk.get("stream") or chunk.get("status")
                if text:
                    for line in str(text).splitlines():
                        on_line(line)
            image = self.api.inspect_image(request.tag)
        return str(image["Id"])

    def image(self, ref: str) -> ImageInfo | None:
        with self._errors(f"inspecting {ref}"):
            try:
                data = self.api.inspect_image(ref)
            except docker.errors.ImageNotFound:
                return None
        return ImageInfo(
            id=str(data["Id"]),
            arch=str(data.get("Architecture", "")),
            labels=dict((data.get("Config") or {}).get("Labels") or {}),
            repo_digests=tuple(data.get("RepoDigests") or ()),
        )

    def tag(self, image: str, ref: str) -> None:
        repo, tag = _split_ref(ref)
        with self._errors(f"tagging {ref}"):
            self.api.tag(image, repo, tag, force=True)

    def push(self, ref: str, on_line: Callable[[str], None]) -> str:
        repo, tag = _split_ref(ref)
        digest = ""
        try:
            for chunk in self.api.push(repo, tag, stream=True, decode=True):
                if "error" in chunk:
                    raise RegistryError(
                        f"push of {ref} failed: {chunk['error']}",
                        hint="check the registry url and `docker login`",
                    )
                digest = (chunk.get("aux") or {}).get("Digest", digest)
                if chunk.get("status"):
                    on_line(str(chunk["status"]))
        except _TRANSPORT_ERRORS as exc:
            raise RegistryError(f"push of {ref} failed: {_reason(exc)}") from None
        if not digest:
            raise RegistryError(f"push of {ref} returned no digest")
        return str(digest)

    def pull(self, ref: str, platform: Arch, on_line: Callable[[str], None]) -> None:
        repo, tag = _split_ref(ref)
        try:
            for chunk in self.api.pull(
                repo, tag, platform=platform.oci_platform, stream=True, decode=True
            ):
                if "error" in chunk:
                    raise RegistryError(f"pull of {ref} failed: {chunk['error']}")
                if chunk.get("status"):
                    on_line(str(chunk["status"]))
        except _TRANSPORT_ERRORS as exc:
            raise RegistryError(
                f"pull of {ref} ({platform.oci_platform}) failed: {_reason(exc)}"
            ) from None

    # -- containers -----------------------------------------------------------
    @contextlib.contextmanager
    def container(self, request: RunRequest) -> Iterator[DockerContainer]:
        with self._errors(f"creating a container of {request.image}"):
            host_config = self.api.create_host_config(
                network_mode="bridge" if request.network else "none",
                security_opt=["no-new-privileges"],
                init=True,
            )
            created = self.api.create_container(
                request.image,
                command=list(request.command),
                environment=dict(request.env),
                user=request.user,
                working_dir=request.workdir,
                labels=dict(request.labels),
                name=request.name,
                host_config=host_config,
                platform=request.platform.oci_platform,
                tty=request.interactive,
                stdin_open=request.interactive,
            )
        box = DockerContainer(self, str(created["Id"]))
        try:
            yield box
        finally:
            failed = box.outcome is None or box.outcome.exit_code != 0
            if not (request.keep and failed):
                box.remove()

    def containers(self, label: str) -> list[str]:
        with self._errors("listing containers"):
            found = self.api.containers(all=True, filters={"label": label})
        return [str(c["Id"]) for c in found]


class DockerContainer:
    """One created container; `DockerEngine.container` removes it on exit."""

    def __init__(self, engine: DockerEngine, container_id: str) -> None:
        self.id = container_id
        self._engine = engine
        self.outcome: RunOutcome | None = None

    def put(self, path: str, tar: bytes) -> None:
        with self._engine._errors(f"copying into {self.id[:12]}"):
            self._engine.api.put_archive(self.id, path, tar)

    def get(self, path: str) -> bytes:
        with self._engine._errors(f"copying {path} out of {self.id[:12]}"):
            stream, _stat = self._engine.api.get_archive(self.id, path)
            return b"".join(stream)

    def start_and_wait(
        self, timeout: float | None, on_output: Callable[[bytes], None]
    ) -> RunOutcome:
        api = self._engine.api
        started = time.monotonic()
        with self._engine._errors(f"starting {self.id[:12]}"):
            # Attach before start: the raw stream is binary-safe and misses
            # nothing, unlike `logs`, which goes through the log driver.
            stream = api.attach(self.id, stdout=True, stderr=True, stream=True, logs=False)
            reader = threading.Thread(target=_drain, args=(stream, on_output), daemon=True)
            reader.start()
            api.start(self.id)
        exit_code: int | None
        timed_out = False
        try:
            # wait() has its own HTTP timeout: it raises when the job overruns.
            result = api.wait(self.id, timeout=timeout)
            exit_code = int(result.get("StatusCode", -1))
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            if timeout is None or time.monotonic() - started < timeout:
                raise EngineError(f"lost engine {self._engine.name!r} while waiting") from None
            timed_out, exit_code = True, None
            self.kill()
        reader.join(timeout=10)
        self.outcome = RunOutcome(exit_code, time.monotonic() - started, timed_out)
        return self.outcome

    def kill(self) -> None:
        with contextlib.suppress(*_TRANSPORT_ERRORS):
            self._engine.api.kill(self.id)

    def attach_terminal(self) -> int:
        """docker-py has no interactive attach (raw terminal modes, window size), so the
        CLI does it, at this engine's address: the one place that runs it."""
        docker = shutil.which("docker")
        if docker is None:
            raise EnvironmentProblem(
                "an interactive shell needs the docker CLI", hint="apt-get install docker.io"
            )
        argv = [docker, "-H", self._engine.url, "start", "--attach", "--interactive", self.id]
        code = subprocess.run(argv, check=False).returncode
        self.outcome = RunOutcome(code, 0.0, timed_out=False)
        return code

    def remove(self) -> None:
        with contextlib.suppress(*_TRANSPORT_ERRORS):
            self._engine.api.remove_container(self.id, force=True, v=True)


def _drain(stream: Iterator[bytes], on_output: Callable[[bytes], None]) -> None:
    with contextlib.suppress(*_TRANSPORT_ERRORS):
        for chunk in stream:
            on_output(chunk)


def _split_ref(ref: str) -> tuple[str, str]:
    """`host:5000/repo:tag` → (`host:5000/repo`, `tag`); the tag defaults to latest."""
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, "latest"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "Connection refused" in text or "No such file or directory" in text:
        return "connection refused (nothing listens there)"
    return text.splitlines()[0][:300]
