"""The fetch step without a fetch container where it can: the build phase's /job
made on the host (see `environment`), its requirement wheels from the versions
an earlier run resolved, or else resolved by pip in a native builder.

`prepare` returns None whenever the builder's own fetch phase must decide:
extra system packages (their versions are read inside the image), an sdist or
pyproject.toml the builder's tools would refuse, no native builder to resolve
in, pip failing, or wheels that do not cover the requirements under the
target's markers. That phase then runs exactly as before.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import NormalizedName

from orchestrator.core.errors import EngineError
from orchestrator.engines import Engine, RunRequest
from orchestrator.images.render import templates_dir
from orchestrator.jobs.builddeps import BuildDepCache, parse_constraints
from orchestrator.jobs.environment import (
    BUILD_USER,
    Dist,
    Interpreter,
    Interpreters,
    best_dists,
    closure,
    installed_members,
    job_tar,
    resolve_target,
    venv_members,
)
from orchestrator.jobs.graph import WheelJob
from orchestrator.jobs.sdist import read_source, setup_requires, static_requires
from orchestrator.model import Arch
from orchestrator.plan.decide import marker_environment
from orchestrator.plan.tags import TagSet


@dataclass(frozen=True, kw_only=True)
class Resolver:
    """A builder that runs natively on the job's engine, of the same release and
    Python as the job's: pip runs there (with the target's tags when they differ)."""

    image: str
    arch: Arch
    foreign: bool  # the job's platform is another arch: pip gets its tags


@dataclass(frozen=True, kw_only=True)
class PrepareRequest:
    """What `prepare` reads: the job, its cached wheels and pins, where to run pip."""

    job: WheelJob
    sdist: Path  # verified against the plan's sha256
    deps: BuildDepCache
    pins: tuple[str, ...] | None
    resolved: tuple[str, ...] | None
    needs: tuple[str, ...]
    tags: TagSet
    engine: Engine
    resolver: Resolver | None
    interpreters: Interpreters
    env: dict[str, str]  # the fetch environment (proxies, index URLs): pip's only
    timeout: float


@dataclass(frozen=True, kw_only=True)
class Prepared:
    tar: bytes  # the build phase's /job but its environment
    env: bytes  # /job/env: the same for most jobs of a night (see `EnvImages`)
    installed: tuple[str, ...]  # name==version of each requirement wheel
    how: str  # for the log: where the versions came from
    resolved_now: bool  # pip resolved them this time (worth recording as pins)


@dataclass(frozen=True, kw_only=True)
class MadeAhead:
    """`prepare` run before the job's slot, while other jobs build: what pip and the
    downloads wait on overlaps their compilers instead of holding a slot."""

    made: Prepared | None  # None: the fetch phase in the builder decides, as before
    lines: tuple[str, ...]  # what it wrote, for the job's log
    seconds: float
    engine: str  # made for this engine's builder: another engine's job makes its own


def prepare(
    request: PrepareRequest, on_line: Callable[[str], None], on_start: Callable[..., None]
) -> Prepared | None:
    job = request.job
    if job.extras.packages:
        return None
    source = read_source(request.sdist)
    static = static_requires(source.pyproject) if source else None
    interp = _interpreter(request)
    if source is None or static is None or interp is None:
        return None
    predicted = [r for r in setup_requires(source) if r not in request.needs]
    requirements = [*static, *predicted, *request.needs]
    env = {
        **marker_environment(job.platform, job.python),
        "python_full_version": interp.version,
        "implementation_version": interp.version,
    }
    constraints = parse_constraints(job.build_constraints, "build constraints")
    dists: list[Dist] | str | None = None
    how, fresh = "recorded versions, from the cache", False
    known = request.pins or request.resolved
    if known:
        pool = best_dists(request.deps.wheels_for(known), request.tags)
        dists = closure([*requirements, *(request.pins or ())], pool, env, constraints)
    if not isinstance(dists, list):
        got = _resolve(request, requirements, interp, on_line=on_line, on_start=on_start)
        how, fresh = "resolved by pip in a native builder", True
        dists = closure(requirements, got, env, constraints) if got is not None else None
    if not isinstance(dists, list):
        on_line(f"== no build environment from the host ({dists or 'pip did not resolve'})")
        return None
    record = {
        "static": static,
        "dynamic": [*predicted, *request.needs],
        "source": source.source,
        "installed": [d.pin for d in dists],
        "system_packages": [],
    }
    members = [*source.members, _file("job/fetch.json", json.dumps(record, indent=1).encode())]
    venv = job_tar([*venv_members(interp, job.python), *installed_members(dists, job.python)])
    return Prepared(
        tar=job_tar(members),
        env=venv,
        installed=tuple(d.pin for d in dists),
        how=how,
        resolved_now=fresh,
    )


def _interpreter(request: PrepareRequest) -> Interpreter | None:
    job = request.job
    try:
        return request.interpreters.get(request.engine, job.image, job.platform.arch, job.python)
    except (EngineError, OSError, tarfile.TarError):
        # No tool venv to read (a templates folder of one's own): the fetch phase makes
        # the venv. An engine that is really down fails that phase too, and is retried.
        return None


def _resolve(
    request: PrepareRequest,
    requirements: Sequence[str],
    interp: Interpreter,
    *,
    on_line: Callable[[str], None],
    on_start: Callable[..., None],
) -> dict[NormalizedName, list[Dist]] | None:
    """pip's choice, wheels only, in a native builder: the wheels it downloaded (into
    the platform's cache too), by name; None when pip failed."""
    resolver, job = request.resolver, request.job
    if resolver is None or not requirements:
        return None
    env = {**request.env, "HOME": "/tmp"}
    if resolver.foreign:
        env["ORCHESTRATE_TARGET"] = json.dumps(resolve_target(request.tags, interp))
    if job.extras.pip_options:
        env["ORCHESTRATE_PIP_OPTIONS"] = json.dumps(list(job.extras.pip_options))
    python = f"/opt/orchestrate/py{job.python}/bin/python"
    run = RunRequest(
        image=resolver.image,
        command=(python, "/job/resolve.py"),
        platform=resolver.arch,
        env=env,
        network=True,
        user=BUILD_USER,
        workdir="/job",
        labels={"org.orchestrate.job": job.id},
    )
    on_line(f"== resolving {' '.join(requirements)} with pip in {resolver.image[:19]} (native)")
    with request.engine.container(run) as box:
        on_start(box.kill)
        box.put("/", job_tar(_resolve_inputs(request, requirements)))
        outcome = box.start_and_wait(request.timeout, lambda chunk: on_line(_text(chunk)))
        if outcome.exit_code != 0:
            return None
        got = box.get("/job/got")
    request.deps.absorb(got, prefix="got/")
    wanted = set(_wheel_names(got))
    return best_dists([w for w in request.deps.wheels() if w.name in wanted], request.tags)


def _resolve_inputs(
    request: PrepareRequest, requirements: Sequence[str]
) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    members = [_file(f"job/deps/{w.name}", w.read_bytes()) for w in request.deps.wheels()]
    members.append(_file("job/requirements.txt", _lines(requirements)))
    members.append(
        _file("job/resolve.py", (templates_dir() / "scripts" / "resolve.py").read_bytes())
    )
    if request.job.build_constraints:
        members.append(_file("job/build-constraints.txt", _lines(request.job.build_constraints)))
    return members


def _lines(lines: Sequence[str]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode()


def _text(chunk: bytes) -> str:
    return chunk.decode(errors="replace").rstrip("\n")


def _wheel_names(tar_bytes: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return [
            m.name.rsplit("/", 1)[-1]
            for m in tar.getmembers()
            if m.isfile() and m.name.endswith(".whl")
        ]


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.mode, info.size = 0o644, len(data)
    return info, data


ENV_IMAGE_LABEL = "org.orchestrate.env-of-run"


class EnvImages:
    """Each distinct /job/env as an image on the builder, made once per run.

    Copying a build environment into a container means the engine unpacks
    thousands of files (setuptools alone: 0.6 s a job here); a night's jobs mostly
    share a handful of environments. A container of the builder gets the env and
    is committed: jobs then start from that image and get only their sources.
    The files are the same bytes as copied in, so the builds are too.
    """

    def __init__(self) -> None:
        self._made: dict[tuple[str, str, str], str] = {}
        self._engines: dict[str, Engine] = {}
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def image(self, engine: Engine, builder: str, arch: Arch, env: bytes, *, run: str) -> str:
        """The builder with `env` at /job/env, on `engine` (EngineError if it cannot),
        labelled with the run that made it."""
        key = (engine.name, builder, hashlib.sha256(env).hexdigest())
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
            self._engines[engine.name] = engine
        with lock:
            if key not in self._made:
                self._made[key] = _committed(engine, builder, arch, env, run=run)
            return self._made[key]

    def close(self) -> None:
        """Remove the images made (one a kept container still uses stays)."""
        with self._guard:
            made, self._made = dict(self._made), {}
        for (engine, _builder, _digest), image in made.items():
            self._engines[engine].remove_image(image)


def _committed(engine: Engine, builder: str, arch: Arch, env: bytes, *, run: str) -> str:
    """A never-started container of the builder with the env copied in, committed."""
    request = RunRequest(
        image=builder,
        command=("true",),
        platform=arch,
        network=False,
        user=BUILD_USER,
        workdir="/job",
    )
    with engine.container(request) as box:
        box.put("/", env)
        return box.commit({ENV_IMAGE_LABEL: run})
