"""The one module that imports docker-py: our `Engine` on a Docker or Podman engine.

Podman serves Docker's API (`podman system service`), so one adapter talks to
both; what differs between the kinds (the limits a container needs, the CLI of
an interactive shell, how rootless mode shows) is decided here and in
`KIND_TRAITS`, nowhere else. Every docker-py or transport exception is
translated here into an `EngineError` (or `RegistryError` for push/pull), so
callers never see docker-py's types.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import IO, Any

import docker
import docker.auth
import docker.errors
import docker.tls
import docker.types
import requests

from orchestrator.config import EngineSpec
from orchestrator.core.errors import (
    BuildStepFailed,
    EngineError,
    EnvironmentProblem,
    RegistryError,
)
from orchestrator.engines import (
    KIND_TRAITS,
    EngineInfo,
    ImageBuildRequest,
    ImageInfo,
    ImageLoadRequest,
    KindTraits,
    RunRequest,
    RunResult,
)
from orchestrator.engines.answers import MACHINE_TO_ARCH, kind_of, reason, split_ref
from orchestrator.engines.archive import ChunkReader, image_archive
from orchestrator.model import Arch, EngineKind

_TRANSPORT_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)
_UNREACHABLE_HINT = (
    "is the engine running? On this host: sudo orchestrate setup-host; "
    "for a remote engine check the url, ssh access and that dockerd runs there; "
    "for Podman: sudo orchestrate setup-host -- --podman (or -- --rootless)"
)
# Podman's own API, beside the compatible one, says whether it runs rootless.
_LIBPOD_INFO = "/v4.0.0/libpod/info"
_DIGEST_LINE = re.compile(r"digest: (sha256:[0-9a-f]{64})")
_LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$")


class DockerEngine:
    """A Docker or Podman engine reached over unix://, tcp:// (TLS) or ssh://."""

    def __init__(self, spec: EngineSpec, timeout: int = 120) -> None:
        self.name = spec.name
        self.url = spec.url
        self.slots = spec.slots
        self._spec = spec
        self._timeout = timeout
        self._client: docker.DockerClient | None = None
        self._kind: EngineKind | None = spec.kind
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
                f"engine {self.name} at {self.url} does not answer: {reason(exc)}",
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
            raise EngineError(f"engine {self.name!r}: {what} failed: {reason(exc)}") from None

    # -- facts ----------------------------------------------------------------
    @property
    def kind(self) -> EngineKind:
        """Declared in the matrix, else read from the engine's version answer."""
        if self._kind is None:
            with self._errors("reading the version"):
                self._kind = kind_of(self.api.version())
        return self._kind

    @property
    def traits(self) -> KindTraits:
        return KIND_TRAITS[self.kind]

    @property
    def ulimits(self) -> dict[str, int]:
        """Every container's limits: the matrix's, else the kind's default."""
        given = self._spec.ulimits
        return dict(self.traits.ulimits) if given is None else {str(k): v for k, v in given.items()}

    def info(self) -> EngineInfo:
        with self._errors("reading version and info"):
            version = self.api.version()
            info = self.api.info()
        if not isinstance(version, dict) or not isinstance(info, dict):
            # An engine's answer is somebody else's text: a wrong shape is its fault.
            raise EngineError(
                f"engine {self.name} ({self.url}): its /version or /info answer is not a "
                "JSON object",
                hint="check that the URL is a Docker or Podman API endpoint",
            )
        # Docker reports uname's name (x86_64), Podman Go's (amd64): one name, uname's.
        reported = str(info.get("Architecture", ""))
        arch = MACHINE_TO_ARCH.get(reported)
        machine = arch.machine if arch else reported
        if self._kind is None:  # the same answer `kind` would ask for
            self._kind = kind_of(version)
        kind = self._kind
        return EngineInfo(
            name=self.name,
            url=self.url,
            kind=kind,
            rootless=self._rootless(kind, info),
            server_version=str(version.get("Version", "?")),
            api_version=str(version.get("ApiVersion", "?")),
            arch=arch,
            machine=machine,
            kernel=str(info.get("KernelVersion", "?")),
            engine_id=str(info.get("ID", "")),
            data_root=str(info.get("DockerRootDir", "")),
        )

    def _rootless(self, kind: EngineKind, info: dict[str, Any]) -> bool:
        if kind is EngineKind.DOCKER:
            return any("rootless" in str(o) for o in info.get("SecurityOptions") or ())
        with self._errors("reading libpod's info"):
            response = self.api.get(self.api.base_url + _LIBPOD_INFO)
            response.raise_for_status()
            answer = response.json()
        host = answer.get("host") if isinstance(answer, dict) else None
        security = host.get("security") if isinstance(host, dict) else None
        return isinstance(security, dict) and security.get("rootless") is True

    # -- images ---------------------------------------------------------------
    def build(self, request: ImageBuildRequest, on_line: Callable[[str], None]) -> str:
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
            lines = _Lines(on_line)
            for chunk in stream:
                if "error" in chunk:
                    lines.flush()
                    on_line(str(chunk["error"]))
                    raise BuildStepFailed(
                        f"build of {request.tag} on {self.name!r} failed: "
                        f"{str(chunk['error']).strip()}"
                    )
                if chunk.get("stream"):
                    lines.add(str(chunk["stream"]))
                elif chunk.get("status"):  # a pull's progress: one message a chunk
                    lines.flush()
                    on_line(str(chunk["status"]))
            lines.flush()
            image = self.api.inspect_image(request.tag)
        return str(image["Id"])

    def load(self, request: ImageLoadRequest) -> str:
        created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        archive = image_archive(
            request.files, platform=request.platform, labels=request.labels, created=created
        )
        with self._errors(f"loading {request.tag}"):
            response = self.api._post(
                self.api._url("/images/load"),
                params={"quiet": "1"},
                data=iter(archive),
                headers={"Content-Type": "application/x-tar"},
            )
            self.api._raise_for_status(response)
            # Errors come as a line of the answer, under a 200.
            for line in response.text.splitlines():
                answer = json.loads(line) if line.strip().startswith("{") else {}
                if "error" in answer:
                    raise EngineError(
                        f"engine {self.name!r}: loading {request.tag} failed: {answer['error']}"
                    )
        self.tag(archive.image_id, request.tag)
        return archive.image_id

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
            layers=tuple((data.get("RootFS") or {}).get("Layers") or ()),
        )

    def tag(self, image: str, ref: str) -> None:
        repo, tag = split_ref(ref)
        with self._errors(f"tagging {ref}"):
            self.api.tag(image, repo, tag, force=True)

    def push(self, ref: str, on_line: Callable[[str], None]) -> str:
        repo, tag = split_ref(ref)
        digest = ""
        path = self.api._url("/images/{0}/push", repo)
        try:
            for chunk in self._registry_stream(path, ref, {"tag": tag}):
                if "error" in chunk:
                    raise RegistryError(
                        f"push of {ref} failed: {chunk['error']}",
                        hint="check the registry url and `docker login`",
                    )
                status = str(chunk.get("status") or "")
                # Podman names the digest in its last status line only.
                found = _DIGEST_LINE.search(status)
                digest = (chunk.get("aux") or {}).get("Digest") or (
                    found.group(1) if found else digest
                )
                if status:
                    on_line(status)
        except _TRANSPORT_ERRORS as exc:
            raise RegistryError(f"push of {ref} failed: {reason(exc)}") from None
        if not digest:
            raise RegistryError(f"push of {ref} returned no digest")
        return str(digest)

    @contextlib.contextmanager
    def save(self, ref: str) -> Iterator[IO[bytes]]:
        with self._errors(f"exporting {ref}"):
            chunks = self.api.get_image(ref, chunk_size=1 << 20)
            yield io.BufferedReader(ChunkReader(chunks), 1 << 20)

    def pull(self, ref: str, platform: Arch, on_line: Callable[[str], None]) -> None:
        repo, tag = split_ref(ref)
        if self.kind is EngineKind.PODMAN:
            # Podman's compatible pull ignores tlsVerify; its own endpoint takes it.
            path = self.api.base_url + "/v4.0.0/libpod/images/pull"
            reference = ref if "@" in ref else f"{repo}:{tag}"  # a digest, or a tag
            params = {"reference": reference, "os": "linux", "arch": platform.value}
        else:
            path = self.api._url("/images/create")
            params = {"fromImage": repo, "tag": tag, "platform": platform.oci_platform}
        try:
            for chunk in self._registry_stream(path, ref, params):
                if "error" in chunk:
                    raise RegistryError(f"pull of {ref} failed: {chunk['error']}")
                text = chunk.get("status") or chunk.get("stream")
                if text:
                    on_line(str(text).rstrip())
        except _TRANSPORT_ERRORS as exc:
            raise RegistryError(
                f"pull of {ref} ({platform.oci_platform}) failed: {reason(exc)}"
            ) from None

    def _registry_stream(
        self, path: str, ref: str, params: dict[str, str]
    ) -> Iterator[dict[str, Any]]:
        """POST to an endpoint that talks to a registry, with the credentials docker-py
        would send, and stream its JSON answers.

        Docker trusts a registry on the loopback over plain HTTP by default (its
        insecure 127.0.0.0/8); Podman trusts only what registries.conf lists. Asking
        Podman not to verify TLS for a loopback registry makes one matrix work on both.
        docker-py's `push` and `pull` take no extra query parameter, hence its lower
        layer here (the same calls those two make)."""
        registry, _name = docker.auth.resolve_repository_name(split_ref(ref)[0])
        headers = {}
        header = docker.auth.get_config_header(self.api, registry)
        if header:
            headers["X-Registry-Auth"] = header
        if self.kind is EngineKind.PODMAN and _LOOPBACK.match(registry):
            params = {**params, "tlsVerify": "false"}
        # Docker's push reads an (empty) JSON body when no X-Registry-Auth is sent.
        response = self.api._post_json(path, {}, params=params, headers=headers, stream=True)
        self.api._raise_for_status(response)
        yield from self.api._stream_helper(response, decode=True)

    # -- containers -----------------------------------------------------------
    @contextlib.contextmanager
    def container(self, request: RunRequest) -> Iterator[DockerContainer]:
        with self._errors(f"creating a container of {request.image}"):
            host_config = self.api.create_host_config(
                network_mode="bridge" if request.network else "none",
                security_opt=["no-new-privileges"],
                init=True,
                ulimits=[
                    docker.types.Ulimit(name=name, soft=value, hard=value)
                    for name, value in sorted(self.ulimits.items())
                ]
                or None,
                tmpfs=dict.fromkeys(request.ram, "exec,dev") or None,
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

    def remove_image(self, image: str) -> None:
        with contextlib.suppress(*_TRANSPORT_ERRORS):
            self.api.remove_image(image)

    def containers(self, label: str) -> list[str]:
        with self._errors("listing containers"):
            found = self.api.containers(all=True, filters={"label": label})
        return [str(c["Id"]) for c in found]


class _Lines:
    """A build's output as whole lines: under load the engine may send one line in
    several chunks ("E", ": ", "Unable to locate package ..."), which must not be
    read as three."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self._on_line = on_line
        self._pending = ""

    def add(self, text: str) -> None:
        *whole, self._pending = (self._pending + text).split("\n")
        for line in whole:
            self._on_line(line.rstrip("\r"))

    def flush(self) -> None:
        if self._pending:
            self._on_line(self._pending.rstrip("\r"))
        self._pending = ""


class DockerContainer:
    """One created container; `DockerEngine.container` removes it on exit."""

    def __init__(self, engine: DockerEngine, container_id: str) -> None:
        self.id = container_id
        self._engine = engine
        self.outcome: RunResult | None = None

    def put(self, path: str, tar: bytes) -> None:
        with self._engine._errors(f"copying into {self.id[:12]}"):
            self._engine.api.put_archive(self.id, path, tar)

    def get(self, path: str) -> bytes:
        with self._engine._errors(f"copying {path} out of {self.id[:12]}"):
            stream, _stat = self._engine.api.get_archive(self.id, path)
            return b"".join(stream)

    def start_and_wait(
        self, timeout: float | None, on_output: Callable[[bytes], None]
    ) -> RunResult:
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
        self.outcome = RunResult(exit_code, time.monotonic() - started, timed_out)
        return self.outcome

    def kill(self) -> None:
        with contextlib.suppress(*_TRANSPORT_ERRORS):
            self._engine.api.kill(self.id)

    def commit(self, labels: Mapping[str, str]) -> str:
        changes = [f"LABEL {key}={json.dumps(value)}" for key, value in sorted(labels.items())]
        with self._engine._errors(f"committing {self.id[:12]}"):
            return str(self._engine.api.commit(self.id, changes=changes)["Id"])

    def attach_terminal(self) -> int:
        """docker-py has no interactive attach (raw terminal modes, window size), so the
        engine's CLI does it, at this engine's address: the one place that runs it."""
        traits = self._engine.traits
        cli = shutil.which(traits.cli)
        if cli is None:
            raise EnvironmentProblem(
                f"an interactive shell needs the {traits.cli} CLI",
                hint=f"apt-get install {traits.package}",
            )
        url = self._engine.url
        argv = [cli, traits.url_flag, url, "start", "--attach", "--interactive", self.id]
        code = subprocess.run(argv, check=False).returncode
        self.outcome = RunResult(code, 0.0, timed_out=False)
        return code

    def remove(self) -> None:
        with contextlib.suppress(*_TRANSPORT_ERRORS):
            self._engine.api.remove_container(self.id, force=True, v=True)


def _drain(stream: Iterator[bytes], on_output: Callable[[bytes], None]) -> None:
    with contextlib.suppress(*_TRANSPORT_ERRORS):
        for chunk in stream:
            on_output(chunk)
