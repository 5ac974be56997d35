"""A fake engine for scheduler and pool tests: our interface, no Docker."""

from __future__ import annotations

import contextlib
import io
import itertools
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

from orchestrator.core.errors import EngineError
from orchestrator.engines import (
    EngineInfo,
    ImageBuildRequest,
    ImageInfo,
    ImageLoadRequest,
    RunRequest,
    RunResult,
)
from orchestrator.model import Arch, EngineKind
from orchestrator.scheduler import Job, JobResult, Placement

_IDS = itertools.count(1)


class FakeContainer:
    def __init__(self, engine: FakeEngine, request: RunRequest) -> None:
        self.id = f"fake-{next(_IDS)}"
        self.engine = engine
        self.request = request

    def put(self, path: str, tar: bytes) -> None:
        pass

    def get(self, path: str) -> bytes:
        """A tar of the files the engine was given for `path`; as a real engine, an
        error for a path that is not there."""
        files = self.engine.files.get(path)
        if not files:
            raise EngineError(f"{self.id}: no such path {path}")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(f"{path.rsplit('/', 1)[-1]}/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    def start_and_wait(
        self, timeout: float | None, on_output: Callable[[bytes], None]
    ) -> RunResult:
        runs = (
            self.request.platform == self.engine.arch
            or self.request.platform in self.engine.emulates
        )
        if not runs:
            return RunResult(exit_code=1, duration=0.0, timed_out=False)
        time.sleep(self.engine.run_seconds)
        on_output(self.engine.output)
        return RunResult(
            exit_code=self.engine.exit_code, duration=self.engine.run_seconds, timed_out=False
        )

    def kill(self) -> None:
        pass

    def commit(self, labels: Mapping[str, str]) -> str:
        return f"sha256:{self.id}"

    def attach_terminal(self) -> int:
        return 0


class FakeEngine:
    def __init__(
        self,
        name: str,
        arch: Arch,
        slots: int = 1,
        emulates: tuple[Arch, ...] = (),
        *,
        files: Mapping[str, Mapping[str, bytes]] | None = None,
        run_seconds: float = 0.0,
        exit_code: int = 0,
        output: bytes = bytes(120),
    ) -> None:
        """`files`: what a container's `get` finds, by folder then file name; each
        container runs `run_seconds`, prints `output` and exits with `exit_code`."""
        self.name = name
        self.url = f"fake://{name}"
        self.slots = slots
        self.arch = arch
        self.emulates = emulates
        self.running = 0
        self.peak = 0
        self.kind = EngineKind.DOCKER
        self.files = dict(files or {})
        self.run_seconds = run_seconds
        self.exit_code = exit_code
        self.output = output
        self._lock = threading.Lock()

    def info(self) -> EngineInfo:
        return EngineInfo(
            name=self.name,
            url=self.url,
            kind=EngineKind.DOCKER,
            rootless=False,
            server_version="fake",
            api_version="1.41",
            arch=self.arch,
            machine=self.arch.machine,
            kernel="6.1",
            engine_id=f"id-{self.name}",
            data_root="/",
        )

    def build(self, request: ImageBuildRequest, on_line: Callable[[str], None]) -> str:
        return "sha256:probe"

    def load(self, request: ImageLoadRequest) -> str:
        return "sha256:loaded"

    def image(self, ref: str) -> ImageInfo | None:
        return ImageInfo("sha256:probe", "", {}, ())

    def tag(self, image: str, ref: str) -> None:
        pass

    def push(self, ref: str, on_line: Callable[[str], None]) -> str:
        return "sha256:x"

    @contextlib.contextmanager
    def save(self, ref: str) -> Iterator[IO[bytes]]:
        yield io.BytesIO()  # no layers: these tests push nothing

    def pull(self, ref: str, platform: Arch, on_line: Callable[[str], None]) -> None:
        pass

    @contextlib.contextmanager
    def container(self, request: RunRequest) -> Iterator[FakeContainer]:
        yield FakeContainer(self, request)

    def containers(self, label: str) -> list[str]:
        return []

    def remove_image(self, image: str) -> None:
        pass

    def close(self) -> None:
        pass

    def work(self, seconds: float) -> None:
        """Occupy a slot of this engine for `seconds` (for scheduler tests)."""
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(seconds)
        with self._lock:
            self.running -= 1


class Recorder:
    """The scheduler's `Progress`, recording each event as (kind, job ID or text)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def queued(self, job: Job[Any]) -> None:
        self.events.append(("queued", job.id))

    def started(self, job: Job[Any], placement: Placement) -> None:
        self.events.append(("start", job.id))

    def phase(self, job_id: str, name: str) -> None:
        self.events.append(("phase", f"{job_id} {name}"))

    def retrying(self, job: Job[Any], result: JobResult) -> None:
        self.events.append(("retry", job.id))

    def finished(self, job: Job[Any], result: JobResult) -> None:
        self.events.append(("done", job.id))

    def not_started(self, job: Job[Any], result: JobResult) -> None:
        self.events.append(("cancelled", job.id))

    def notice(self, text: str) -> None:
        self.events.append(("notice", text))

    def of(self, kind: str) -> list[str]:
        """The job IDs (or texts) of one kind of event, in order."""
        return [what for k, what in self.events if k == kind]
