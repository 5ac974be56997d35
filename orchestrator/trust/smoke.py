"""The smoke test: does a new wheel load where only its runtime packages are?

A clean container made from the platform's *base* image (not the builder: no
compiler, no -dev packages) plus the distro's interpreter and the wheel's
recorded runtime packages, nothing else. That image is a `FROM <base ID>`
build on the job's engine, made once per (base, package set) and found by
its tag. The wheel and `smoke_check.py` go in as a tar; the container runs
with no network as `nobody`. A wheel that fails is not published.
"""

from __future__ import annotations

import functools
import io
import json
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestrator.config.matrix import Platform
from orchestrator.core.files import archived_file
from orchestrator.engines import Engine, RunRequest
from orchestrator.images.derived import derived_image
from orchestrator.images.render import templates_dir
from orchestrator.images.sysdeps import base_dockerfile
from orchestrator.trust.runtime import Runtime

NOBODY = 65534  # Debian's and EL's `nobody`: the check runs as no one in particular
SMOKE_TIMEOUT = 600.0


@dataclass(frozen=True)
class SmokePlan:
    """What one smoke test runs: in which image packages, with what command."""

    packages: tuple[str, ...]  # the interpreter, the runtime packages, the matrix's extra
    command: str | None = None
    timeout: float = SMOKE_TIMEOUT
    # Proxies for making the smoke image (with network); the check itself has none.
    env: Mapping[str, str] = field(default_factory=dict)


def smoke_plan(
    python: str, runtime: Runtime, extra: Sequence[str] = (), command: str | None = None
) -> SmokePlan:
    packages = dict.fromkeys((f"python{python}", *runtime.packages, *extra))
    return SmokePlan(tuple(packages), command)


@dataclass(frozen=True, kw_only=True)
class SmokeResult:
    passed: bool
    error: str = ""  # the first failure: module and the loader's words
    packages: list[str] = field(default_factory=list)
    image: str = ""
    checks: list[dict[str, str]] = field(default_factory=list)
    command: dict[str, object] | None = None
    seconds: float = 0.0
    where: str = "bare base"  # or "builder, libraries checked": see smoke_in_image
    foreign: list[str] = field(default_factory=list)  # libraries loaded from elsewhere

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def smoke_test(
    engine: Engine,
    platform: Platform,
    wheel: Path,
    runtime: Runtime,
    *,
    base: str,
    plan: SmokePlan,
    on_line: Callable[[str], None],
    on_start: Callable[[Callable[[], None]], None] = lambda _kill: None,
) -> SmokeResult:
    """Make (or find) the smoke image on `engine` from `base` (the platform's base image
    ID there, `images.base.ensure_base`) and check `wheel` in it; `on_start` gets the
    container's kill, so that a cancelled run stops it."""
    started = time.monotonic()
    dockerfile = base_dockerfile(base, platform.family.value, plan.packages, platform.apt_sources)
    image = derived_image(
        engine,
        dockerfile,
        "orchestrate-smoke",
        platform.arch,
        packages=plan.packages,
        env=plan.env,
        on_line=on_line,
    )
    check = SmokeCheck(image=image, python=plan.packages[0].removeprefix("python"))
    result = smoke_in_image(
        engine, platform, wheel, runtime, check=check, plan=plan, on_line=on_line, on_start=on_start
    )
    seconds = round(time.monotonic() - started, 2)  # the image's making included
    return replace(result, seconds=seconds)


@dataclass(frozen=True, kw_only=True)
class SmokeCheck:
    """Where a check runs: the image, its Python, and, in an image holding more than
    the wheel's packages, the shared objects the wheel may load (None: no limit)."""

    image: str
    python: str
    allowed: tuple[str, ...] | None = None


def smoke_in_image(
    engine: Engine,
    platform: Platform,
    wheel: Path,
    runtime: Runtime,
    *,
    check: SmokeCheck,
    plan: SmokePlan,
    on_line: Callable[[str], None],
    on_start: Callable[[Callable[[], None]], None] = lambda _kill: None,
) -> SmokeResult:
    """Check `wheel` in `check.image`: the bare base's smoke image, or one that holds
    more than the wheel's runtime packages (the builder it was built in: no image to
    make, nothing installed under QEMU), where every library the process loads is
    held to `check.allowed`."""
    started = time.monotonic()
    # -S in a builder: its system site-packages are not the bare base's
    flags = ("-S",) if check.allowed is not None else ()
    request = RunRequest(
        image=check.image,
        command=(f"/usr/bin/python{check.python}", *flags, "/smoke/check.py"),
        platform=platform.arch,
        env={"HOME": "/smoke", "PYTHONDONTWRITEBYTECODE": "1"},
        network=False,
        user=f"{NOBODY}:{NOBODY}",
        labels={"org.orchestrate.smoke": wheel.name},
    )
    with engine.container(request) as box:
        on_start(box.kill)
        box.put("/", smoke_tar(wheel, runtime, plan, check.allowed))
        outcome = box.start_and_wait(plan.timeout, lambda chunk: on_line(_text(chunk)))
        said = _result(box.get("/smoke/result.json")) if not outcome.timed_out else None
    result = verdict(said, outcome.exit_code, timed_out=outcome.timed_out, timeout=plan.timeout)
    return replace(
        result,
        packages=list(plan.packages),
        image=check.image,
        where="bare base" if check.allowed is None else "builder, libraries checked",
        seconds=round(time.monotonic() - started, 2),
    )


INLINE_WHERE = "build container, libraries checked"
INLINE_SCRIPT = "job/smoke/check.py"  # in the build phase's /job: alone in its folder (sys.path[0])
# The build phase's command, then, if it built the wheel, the check (its own failure
# is not the build's: the host checks again). `date` gives the check its start.
INLINE = (
    'py="$1"; shift; "$@"; code=$?; if [ "$code" -eq 0 ]; then started="$(date +%s.%N)"; '
    "env -i HOME=/tmp PATH=/usr/bin:/bin PYTHONDONTWRITEBYTECODE=1 "
    f'"$py" -S /{INLINE_SCRIPT} --inline "$started" || true; fi; exit "$code"'
)


def inline_smoke_command(command: Sequence[str], python: str) -> tuple[str, ...]:
    return ("/bin/sh", "-c", INLINE, "sh", f"/usr/bin/python{python}", *command)


def inline_smoke_files(command: str | None) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """The check and its test command, for the build phase's /job."""
    config = json.dumps({"command": command, "timeout": SMOKE_TIMEOUT}).encode()
    folder = INLINE_SCRIPT.rsplit("/", 1)[0]
    return [_member(INLINE_SCRIPT, check_script()), _member(f"{folder}/smoke.json", config)]


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.mode, info.size = 0o644, len(data)
    return info, data


@functools.cache  # read once per run, not once per job
def check_script() -> bytes:
    return (templates_dir() / "scripts" / "smoke_check.py").read_bytes()


# Merged /usr: the process maps /usr/lib/... where dpkg may list /lib/... .
MERGED = ("/lib/", "/lib64/", "/bin/", "/sbin/")


def inline_verdict(
    said: Mapping[str, object], runtime: Runtime, plan: SmokePlan, allowed: Sequence[str]
) -> SmokeResult | None:
    """The check the build container ran as soon as the wheel existed (smoke_check.py
    --inline: no container of its own), held here to `allowed`, the shared objects of
    the wheel's runtime packages. Only a pass is taken: None when it checked fewer
    modules than the wheel has, failed, or loaded anything `allowed` does not name;
    the check in a container of its own then decides, as before."""
    listed = said.get("checks")
    checks = [dict(c) for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
    covered = {str(c.get("module")) for c in checks if c.get("status") in ("ok", "skipped")}
    loaded = said.get("loaded")
    if said.get("passed") is not True or not isinstance(loaded, list):
        return None
    if not {*runtime.extensions, *runtime.top_level} <= covered:
        return None
    known = {*allowed, *(f"/usr{p}" for p in allowed if p.startswith(MERGED))}
    if any(not isinstance(p, str) or p not in known for p in loaded):
        return None
    seconds, command = said.get("seconds"), said.get("command")
    return SmokeResult(
        passed=True,
        packages=list(plan.packages),
        checks=checks,
        where=INLINE_WHERE,
        seconds=float(seconds) if isinstance(seconds, int | float) else 0.0,
        command=dict(command) if isinstance(command, dict) else None,
    )


def _text(chunk: bytes) -> str:
    return chunk.decode(errors="replace").rstrip("\n")


def verdict(
    said: Mapping[str, object] | None, exit_code: int | None, *, timed_out: bool, timeout: float
) -> SmokeResult:
    """The check's own result file read into a SmokeResult, or why there is none."""
    if timed_out:
        return SmokeResult(passed=False, error=f"the smoke test timed out after {timeout:.0f}s")
    if said is None:
        return SmokeResult(
            passed=False, error=f"the smoke test wrote no result (exit code {exit_code})"
        )
    listed = said.get("checks")
    checks = [dict(c) for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
    command = said.get("command")
    command = command if isinstance(command, dict) else None
    failed = [c for c in checks if c.get("status") == "failed"]
    if failed:
        error = f"{failed[0].get('module')}: {failed[0].get('error')}"
    elif command and command.get("error"):
        error = f"test command `{command.get('command')}`: {command.get('error')}"
    else:
        error = ""
    outside = said.get("foreign")
    foreign = [str(p) for p in outside] if isinstance(outside, list) else []
    if foreign and not error:
        error = f"loaded {foreign[0]}, which none of its runtime packages provides"
    return SmokeResult(
        passed=said.get("passed") is True and not error,
        error=error,
        checks=checks,
        command=command,
        foreign=foreign,
    )


def _result(tar_bytes: bytes) -> dict[str, object] | None:
    text = archived_file(tar_bytes)
    try:
        data = json.loads(text) if text is not None else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def smoke_tar(
    wheel: Path, runtime: Runtime, plan: SmokePlan, allowed: tuple[str, ...] | None = None
) -> bytes:
    """/smoke: the check, its config and the wheel, owned by `nobody`."""
    config: dict[str, object] = {
        "wheel": wheel.name,
        "extensions": list(runtime.extensions),
        "top_level": list(runtime.top_level),
        "command": plan.command,
        "timeout": plan.timeout,
    }
    if allowed is not None:
        config["allowed_libraries"] = list(allowed)
    check = check_script()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, "smoke", None)
        _add(tar, "smoke/check.py", check)
        _add(tar, "smoke/smoke.json", json.dumps(config).encode())
        _add(tar, f"smoke/{wheel.name}", wheel.read_bytes())
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes | None) -> None:
    info = tarfile.TarInfo(name)
    info.uid = info.gid = NOBODY
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        return
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))
