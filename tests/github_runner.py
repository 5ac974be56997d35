"""A GitHub Actions night run on this host, as hosted runners would run it.

No GitHub runner or `act` runs here, and a container cannot give a job a runner's
privileges (the build job starts Docker's set-up with sudo, binfmt and a registry).
So each job runs on the host, in a fresh clone of the user's repository, with an
empty HOME, work folder and RUNNER_TEMP: every `run:` step in order, with
`bash --noprofile --norc -eo pipefail` as GitHub runs it, the workflow's and job's
`env:`, GITHUB_ENV and GITHUB_OUTPUT, step `if:` conditions, job `needs:`, `if:`,
`outputs:` and `strategy.matrix`. Expressions are evaluated by a small evaluator of
the forms the shipped workflow uses; any other form fails the test.

The `uses:` steps are replaced by local equivalents:

- actions/checkout@v4: a `git clone` of the user's repository;
- actions/setup-python@v5: a venv of the host's python3, first on PATH;
- actions/cache@v4: a folder per key, restore-keys by prefix (newest first), saved
  at the job's end when the key missed;
- actions/upload-artifact@v4: a folder per name (`overwrite` honoured);
- actions/download-artifact@v4: copied back (by name, or pattern with
  merge-multiple);
- actions/upload-pages-artifact@v3: the site folder, links resolved;
- actions/deploy-pages@v4: the served folder replaced at once (a local HTTP
  server plays GitHub Pages).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


class Context(dict[str, Any]):
    """A context object: a missing key is null, as in GitHub's expressions."""

    def __getattr__(self, name: str) -> Any:
        return self.get(name.replace("__dash__", "-"))


class Items(list[Any]):
    def __getitem__(self, index: Any) -> Any:
        try:
            return super().__getitem__(index)
        except IndexError:
            return None


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return Context({k: _wrap(v) for k, v in value.items()})
    if isinstance(value, list):
        return Items(_wrap(v) for v in value)
    return value


TOKENS = [
    (re.compile(r"&&"), " and "),
    (re.compile(r"\|\|"), " or "),
    (re.compile(r"!(?!=)"), " not "),
    (re.compile(r"\bnull\b"), "None"),
    (re.compile(r"\btrue\b"), "True"),
    (re.compile(r"\bfalse\b"), "False"),
]
KNOWN = re.compile(r"^(?:[\w.\[\]'\s()=!&|-]|fromJSON|cancelled|always|success|failure)*$")


def evaluate(expression: str, contexts: Mapping[str, Any]) -> Any:
    if not KNOWN.match(expression):
        raise AssertionError(f"an expression this stand-in does not know: {expression}")
    pieces = re.split(r"('[^']*')", expression)  # string literals are left as they are
    for number in range(0, len(pieces), 2):
        for pattern, replacement in TOKENS:
            pieces[number] = pattern.sub(replacement, pieces[number])
        pieces[number] = re.sub(r"(?<=\w)-(?=\w)", "__dash__", pieces[number])  # run-id style
    python = "".join(pieces)
    names = {k: _wrap(v) for k, v in contexts.items()}
    names["fromJSON"] = lambda text: _wrap(json.loads(text))
    return eval(python, {"__builtins__": {}}, names)


def substitute(text: Any, contexts: Mapping[str, Any]) -> Any:
    """Every ${{ }} in a value; a value that is one expression keeps its type."""
    if isinstance(text, dict):
        return {k: substitute(v, contexts) for k, v in text.items()}
    if not isinstance(text, str):
        return text
    whole = EXPRESSION.fullmatch(text.strip())
    if whole:
        return evaluate(whole.group(1), contexts)
    return EXPRESSION.sub(lambda m: _text(evaluate(m.group(1), contexts)), text)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


STATUS = re.compile(r"\b(?:success|failure|always|cancelled)\(\)")


def condition(text: Any, contexts: Mapping[str, Any]) -> bool:
    """An `if:`; without a status function it means `success() && (...)`, as on GitHub."""
    if isinstance(text, bool):
        return text
    expression = str(text).strip()
    whole = EXPRESSION.fullmatch(expression)
    expression = whole.group(1) if whole else expression
    if not STATUS.search(expression):
        expression = f"success() && ({expression})"
    return bool(evaluate(expression, contexts))


@dataclass
class Job:
    """One job instance's run (mutable while it runs: the runner's own bookkeeping)."""

    name: str
    result: str = "skipped"
    outputs: dict[str, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


@dataclass
class Night:
    jobs: dict[str, list[Job]]

    def result(self, name: str) -> str:
        runs = self.jobs.get(name, [])
        if any(j.result == "failure" for j in runs):
            return "failure"
        return "success" if runs and all(j.result == "success" for j in runs) else "skipped"

    def log(self) -> str:
        return "\n".join(line for runs in self.jobs.values() for j in runs for line in j.log)


@dataclass(frozen=True, kw_only=True)
class Scope:
    """What every job of one night sees: the workflow, its contexts, its artifacts."""

    flow: dict[str, Any]
    contexts: dict[str, Any]
    artifacts: Path
    run_id: int


@dataclass
class Runner:
    """Runs a workflow's jobs in `needs` order, each instance on a fresh workspace (a
    matrix's instances at once)."""

    workflow: Path  # inside `repo`
    repo: Path
    root: Path  # the runner's own folders: artifacts, caches, jobs, pages
    variables: Mapping[str, str]
    base_env: Mapping[str, str]
    deploy: Callable[[Path], None]  # what deploy-pages does with the site folder

    def night(self, run_id: int) -> Night:
        flow = yaml.safe_load(self.workflow.read_text())
        artifacts = self.root / f"artifacts-{run_id}"
        shutil.rmtree(artifacts, ignore_errors=True)
        night = Night(jobs={})
        for name in _ordered(flow["jobs"]):
            spec = flow["jobs"][name]
            needs = spec.get("needs", [])
            needs = [needs] if isinstance(needs, str) else needs
            contexts = {
                "github": {"run_id": run_id, "run_attempt": 1},
                "vars": dict(self.variables),
                "needs": {
                    n: {"result": night.result(n), "outputs": _outputs(night, n)} for n in needs
                },
            }
            scope = Scope(flow=flow, contexts=contexts, artifacts=artifacts, run_id=run_id)
            night.jobs[name] = self._job(name, spec, scope)
        return night

    def _job(self, name: str, spec: dict[str, Any], scope: Scope) -> list[Job]:
        contexts = scope.contexts
        needs_ok = all(n["result"] == "success" for n in contexts["needs"].values())
        status = {
            "cancelled": lambda: False,
            "always": lambda: True,
            "success": lambda: needs_ok,
            "failure": lambda: not needs_ok,
        }
        if not condition(spec.get("if", "success()"), {**contexts, **status}):
            return [Job(name=name)]
        matrix = substitute(spec.get("strategy", {}).get("matrix", {}), contexts)
        instances = list(matrix.get("include", [])) if matrix else [{}]
        # A matrix's instances run at once, each on a runner of its own, as on GitHub.
        scopes = [replace(scope, contexts={**contexts, "matrix": m}) for m in instances]
        with ThreadPoolExecutor(max_workers=len(instances)) as pool:
            runs = [pool.submit(self._instance, name, spec, s, i) for i, s in enumerate(scopes)]
            return [run.result() for run in runs]

    def _instance(self, name: str, spec: dict[str, Any], scope: Scope, index: int) -> Job:
        flow, contexts, artifacts, run_id = (
            scope.flow,
            scope.contexts,
            scope.artifacts,
            scope.run_id,
        )
        job = Job(name=name, result="success")
        home = self.root / "jobs" / f"{run_id}-{name}-{index}"
        shutil.rmtree(home, ignore_errors=True)
        work, temp = home / "workspace", home / "temp"
        for folder in (home / "home", temp, home / "bin"):
            folder.mkdir(parents=True)
        sudo = home / "bin" / "sudo"  # hosted runners' passwordless sudo; we are root
        sudo.write_text('#!/bin/sh\nexec "$@"\n')
        sudo.chmod(0o755)
        env = {
            **self.base_env,
            "HOME": str(home / "home"),
            "RUNNER_TEMP": str(temp),
            "GITHUB_WORKSPACE": str(work),
            "PATH": f"{home / 'bin'}:{self.base_env['PATH']}",
        }
        contexts = {**contexts, "env": {}}
        env.update(_strings(substitute(flow.get("env", {}), {**contexts, "env": env})))
        env.update(_strings(substitute(spec.get("env", {}), {**contexts, "env": env})))
        steps: dict[str, Any] = {}
        post: list[Callable[[], None]] = []
        failed = False
        for number, step in enumerate(spec.get("steps", [])):
            here = {**contexts, "env": env, "steps": steps}
            ok = {"success": lambda f=failed: not f, "failure": lambda f=failed: f}
            status = {"cancelled": lambda: False, "always": lambda: True, **ok}
            if not condition(step.get("if", "success()"), {**here, **status}):
                continue
            outputs, passed = self._step(
                step, contexts=here, env=env, work=work, artifacts=artifacts, job=job, post=post
            )
            failed = failed or not passed
            if "id" in step:
                steps[step["id"]] = {
                    "outputs": outputs,
                    "outcome": "success" if passed else "failure",
                }
            job.log.append(f"[{name} step {number}] {'ok' if passed else 'FAILED'}")
        for action in post:
            action()
        job.result = "failure" if failed else "success"
        here = {**contexts, "env": env, "steps": steps}
        job.outputs = {k: _text(substitute(v, here)) for k, v in spec.get("outputs", {}).items()}
        return job

    def _step(
        self,
        step: dict[str, Any],
        *,
        contexts: dict[str, Any],
        env: dict[str, str],
        work: Path,
        artifacts: Path,
        job: Job,
        post: list[Callable[[], None]],
    ) -> tuple[dict[str, str], bool]:
        step_env = {**env, **_strings(substitute(step.get("env", {}), contexts))}
        given = substitute(step.get("with", {}), contexts)
        if "uses" in step:  # an action may change the job's env (setup-python's PATH)
            ACTIONS[step["uses"]](self, given, env, work, artifacts, post)
            return {}, True
        temp = Path(env["RUNNER_TEMP"])
        output, env_file = temp / "output", temp / "env"
        output.write_text("")
        env_file.write_text("")
        script = temp / "step.sh"
        script.write_text(substitute(step["run"], contexts))
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=work,
            env={**step_env, "GITHUB_OUTPUT": str(output), "GITHUB_ENV": str(env_file)},
            capture_output=True,
            text=True,
            check=False,
        )
        job.log.append(done.stdout + done.stderr)
        env.update(_pairs(env_file.read_text()))
        return _pairs(output.read_text()), done.returncode == 0


def _ordered(jobs: Mapping[str, Any]) -> list[str]:
    order: list[str] = []
    while len(order) < len(jobs):
        for name, spec in jobs.items():
            needs = spec.get("needs", [])
            needs = [needs] if isinstance(needs, str) else needs
            if name not in order and all(n in order for n in needs):
                order.append(name)
    return order


def _outputs(night: Night, name: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for job in night.jobs.get(name, []):
        found.update(job.outputs)
    return found


def _strings(values: Mapping[str, Any]) -> dict[str, str]:
    return {k: _text(v) for k, v in values.items()}


def _pairs(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


# --- the uses: stand-ins ----------------------------------------------------------


def _checkout(runner: Runner, _with: Any, _env: Any, work: Path, *_: Any) -> None:
    subprocess.run(["git", "clone", "-q", str(runner.repo), str(work)], check=True)


def _setup_python(_runner: Runner, _with: Any, env: dict[str, str], work: Path, *_: Any) -> None:
    venv = Path(env["RUNNER_TEMP"]).parent / "python"
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"


def _upload(
    _runner: Runner, given: dict[str, Any], _env: Any, work: Path, artifacts: Path, *_: Any
) -> None:
    target = artifacts / given["name"]
    if target.exists():
        assert given.get("overwrite") is True, f"artifact {given['name']} exists"
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for line in str(given["path"]).split("\n"):
        path = line.strip().rstrip("/")
        if not path:
            continue
        source = work / path
        if source.is_dir():
            shutil.copytree(source, target / path)
        elif source.is_file():
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / path)
        else:
            assert given.get("if-no-files-found") == "ignore", f"no {path} to upload"


def _download(
    _runner: Runner, given: dict[str, Any], _env: Any, work: Path, artifacts: Path, *_: Any
) -> None:
    if "name" in given:
        names = [given["name"]]
    else:
        pattern = re.compile(str(given["pattern"]).replace("*", ".*") + "$")
        names = sorted(p.name for p in artifacts.iterdir() if pattern.match(p.name))
    for name in names:
        into = work if "name" in given or given.get("merge-multiple") else work / name
        shutil.copytree(artifacts / name, into, dirs_exist_ok=True)


def _cache(
    runner: Runner,
    given: dict[str, Any],
    _env: Any,
    _work: Path,
    _artifacts: Path,
    post: list[Callable[[], None]],
) -> None:
    store = runner.root / "cache"
    store.mkdir(exist_ok=True)
    path, key = Path(given["path"]), given["key"]
    prefixes = [str(k).strip() for k in str(given.get("restore-keys", "")).split("\n") if k.strip()]
    hit = store / key if (store / key).exists() else None
    for prefix in prefixes:
        if hit is None:
            found = [p for p in store.iterdir() if p.name.startswith(prefix)]
            hit = max(found, key=lambda p: p.stat().st_mtime) if found else None
    if hit is not None:
        shutil.copytree(hit, path, symlinks=True, dirs_exist_ok=True)
    if hit != store / key:
        post.append(lambda: _save(path, store / key))


def _save(path: Path, entry: Path) -> None:
    if path.exists():
        shutil.copytree(path, entry, symlinks=True)


def _upload_pages(
    _runner: Runner, given: dict[str, Any], _env: Any, work: Path, artifacts: Path, *_: Any
) -> None:
    shutil.copytree(work / given["path"], artifacts / "github-pages", symlinks=False)


def _deploy_pages(
    runner: Runner, _with: Any, _env: Any, _w: Path, artifacts: Path, *_: Any
) -> None:
    runner.deploy(artifacts / "github-pages")


ACTIONS: dict[str, Callable[..., None]] = {
    "actions/checkout@v4": _checkout,
    "actions/setup-python@v5": _setup_python,
    "actions/cache@v4": _cache,
    "actions/upload-artifact@v4": _upload,
    "actions/download-artifact@v4": _download,
    "actions/upload-pages-artifact@v3": _upload_pages,
    "actions/deploy-pages@v4": _deploy_pages,
}
