"""The plan file: one night's decisions, made once and built by every shard.

`orchestrate plan --shards --save-plan plan.json` writes it; `build --plan` builds
from it, so that every runner builds the same decisions even when the index
changes between the plan job and the runners; each bundle carries it, and
`merge` checks that the bundles share it.

Its identity is the sha256 of what decides the night: the matrix file, the
requirement files given, the platforms and every decision. Not the time it was
made, nor the shards (their expected durations come from a cache).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jsonschema

from orchestrator.core.errors import InputError, StoreConflict
from orchestrator.core.files import read_bounded, write_atomic
from orchestrator.core.quoting import shown
from orchestrator.core.redact import redact
from orchestrator.model import Action
from orchestrator.plan.decide import Decision
from orchestrator.plan.shards import Shard

FORMAT = "orchestrate-plan-1"
MAX_BYTES = 256 << 20  # 15 platforms x 4 branches x 575 pins is a few MiB
# `(?![\s\S])` ends the string: `$` would also match before a final newline (in
# Python's re, which the validator uses), and let "amd64\n" through as a name.
END = r"(?![\s\S])"
SHA = {"type": "string", "pattern": "^[0-9a-f]{64}" + END}
TEXT = {"type": "string", "maxLength": 4096}
NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}" + END}
MAYBE = {"type": ["string", "null"], "maxLength": 4096}
# fmt: off  (a JSON Schema reads best as the nested table it is)
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "format",
        "identity",
        "created",
        "matrix",
        "inputs",
        "platforms",
        "shards",
        "decisions",
    ],
    "properties": {
        "format": {"const": FORMAT},
        "identity": SHA,
        "created": TEXT,
        "matrix": SHA,
        "inputs": {"type": "object", "additionalProperties": SHA},
        "platforms": {"type": "array", "items": NAME},
        "shards": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["shard", "platforms", "labels", "native", "jobs", "expected_seconds"],
                "properties": {
                    "shard": NAME,
                    "platforms": {"type": "array", "items": NAME},
                    "labels": {"type": "array", "items": TEXT},
                    "native": {"type": "boolean"},
                    "jobs": {"type": "integer", "minimum": 0},
                    "expected_seconds": {"type": "number", "minimum": 0},
                    "items": {"type": "array", "items": TEXT},
                    "part": {"type": "integer", "minimum": 1},
                },
                "additionalProperties": False,
            },
        },
        "decisions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "platform",
                    "python",
                    "name",
                    "version",
                    "action",
                    "reason",
                    "branches",
                ],
                "properties": {
                    "platform": NAME,
                    "python": TEXT,
                    "name": TEXT,
                    "version": TEXT,
                    "action": {"enum": [a.value for a in Action]},
                    "reason": TEXT,
                    "wheel": MAYBE,
                    "sdist": MAYBE,
                    "source": TEXT,
                    "sdist_url": MAYBE,
                    "sdist_sha256": MAYBE,
                    "branches": {"type": "array", "items": TEXT},
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}
# fmt: on


@dataclass(frozen=True, kw_only=True)
class PlanFile:
    identity: str
    created: str
    matrix: str  # the matrix file's sha256
    inputs: Mapping[str, str] = field(default_factory=dict)  # requirement file -> sha256
    platforms: tuple[str, ...]
    shards: tuple[Shard, ...] = ()
    decisions: tuple[Decision, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "identity": self.identity,
            "created": self.created,
            "matrix": self.matrix,
            "inputs": dict(self.inputs),
            "platforms": list(self.platforms),
            "shards": [s.as_dict() for s in self.shards],
            "decisions": [d.as_dict() for d in self.decisions],
        }

    def shard(self, name: str) -> Shard:
        for shard in self.shards:
            if shard.name == name:
                return shard
        known = ", ".join(s.name for s in self.shards) or "none"
        raise InputError(f"the plan has no shard {shown(name)} (its shards: {known})")

    @property
    def busy_shards(self) -> tuple[Shard, ...]:
        """The shards a runner was started for: those with something to build."""
        return tuple(s for s in self.shards if s.jobs)


def make_plan_file(
    *,
    matrix: str,
    inputs: Mapping[str, str],
    platforms: Sequence[str],
    decisions: Sequence[Decision],
    shards: Sequence[Shard] = (),
    created: str,
) -> PlanFile:
    public = tuple(_public(d) for d in decisions)
    return PlanFile(
        identity=identity_of(matrix, inputs, platforms, public),
        created=created,
        matrix=matrix,
        inputs=dict(inputs),
        platforms=tuple(platforms),
        shards=tuple(shards),
        decisions=public,
    )


def _public(decision: Decision) -> Decision:
    """A decision as a plan file carries it (a CI artifact, in every bundle): no
    credentials. A runner building it adds its index's own again (`with_credentials`)."""
    return replace(
        decision,
        sdist_url=without_credentials(decision.sdist_url),
        reason=redact(decision.reason),
        source=redact(decision.source),
    )


def without_credentials(url: str | None) -> str | None:
    if not url or "@" not in url:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def with_credentials(decision: Decision, index_url: str) -> Decision:
    """A plan file's decision with the credentials of `index_url` put back into its
    sdist URL, when both name the same host (what the plan job's pages gave)."""
    url, index = decision.sdist_url, urlsplit(index_url)
    if not url or "@" not in index.netloc:
        return decision
    parts = urlsplit(url)
    if "@" in parts.netloc or parts.netloc != index.netloc.rpartition("@")[2]:
        return decision
    netloc = f"{index.netloc.rpartition('@')[0]}@{parts.netloc}"
    return replace(decision, sdist_url=urlunsplit(parts._replace(netloc=netloc)))


def identity_of(
    matrix: str, inputs: Mapping[str, str], platforms: Sequence[str], decisions: Sequence[Decision]
) -> str:
    decided = sorted(json.dumps(d.as_dict(), sort_keys=True) for d in decisions)
    what = {
        "matrix": matrix,
        "inputs": dict(sorted(inputs.items())),
        "platforms": sorted(platforms),
        "decisions": decided,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def joined(plans: Sequence[PlanFile]) -> PlanFile | None:
    """Plans made apart for one night (`build -p GLOB --bundle` on each runner, with
    no shared plan file) as one plan: the same matrix and requirement files, and
    platforms that do not overlap. None when they are not that."""
    first = plans[0]
    if any(p.matrix != first.matrix or dict(p.inputs) != dict(first.inputs) for p in plans):
        return None
    platforms = tuple(name for p in plans for name in p.platforms)
    if len(set(platforms)) != len(platforms):
        return None
    decisions = tuple(d for p in plans for d in p.decisions)
    return PlanFile(
        identity=identity_of(first.matrix, first.inputs, platforms, decisions),
        created=max(p.created for p in plans),
        matrix=first.matrix,
        inputs=dict(first.inputs),
        platforms=platforms,
        shards=tuple(s for p in plans for s in p.shards),
        decisions=decisions,
    )


def file_digests(paths: Sequence[Path]) -> dict[str, str]:
    """The requirement files a plan was made from, by name: the same checkout on
    every runner gives the same names."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def save_plan(plan: PlanFile, path: Path) -> None:
    write_atomic(path, json.dumps(plan.as_dict(), indent=1) + "\n")


def load_plan(path: Path, *, what: str = "plan file") -> PlanFile:
    """A plan file, checked: readable, of its schema, and its identity matching its
    contents (an edited decision is a different plan: exit 4)."""
    data = _read_json(path, what)
    try:
        jsonschema.validate(data, SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise InputError(
            f"{path}: not an orchestrate {what} ({where}: {shown(exc.message, 200)})",
            hint="use the file `orchestrate plan --shards --save-plan` wrote",
        ) from None
    plan = PlanFile(
        identity=data["identity"],
        created=data["created"],
        matrix=data["matrix"],
        inputs=data["inputs"],
        platforms=tuple(data["platforms"]),
        shards=tuple(Shard.from_dict(s) for s in data["shards"]),
        decisions=tuple(Decision.from_dict(d) for d in data["decisions"]),
    )
    if identity_of(plan.matrix, plan.inputs, plan.platforms, plan.decisions) != plan.identity:
        raise StoreConflict(
            f"{path}: its decisions do not match its identity {plan.identity[:16]}: "
            "the file was edited after it was made",
            hint="make the plan again with `orchestrate plan --shards --save-plan`",
        )
    return plan


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(read_bounded(path, MAX_BYTES))
    except FileNotFoundError:
        raise InputError(f"{path}: the {what} does not exist") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:
        raise InputError(
            f"{path}: the {what} is not JSON (cut short?): {shown(str(exc), 200)}"
        ) from None


def differences(mine: PlanFile, theirs: PlanFile) -> list[str]:
    """What differs between two plans, in words, the most telling first."""
    out = []
    if mine.matrix != theirs.matrix:
        out.append(f"the matrix file (sha256 {mine.matrix[:12]} vs {theirs.matrix[:12]})")
    if dict(mine.inputs) != dict(theirs.inputs):
        names = sorted(set(mine.inputs) ^ set(theirs.inputs)) or sorted(
            k for k in mine.inputs if mine.inputs[k] != theirs.inputs.get(k)
        )
        out.append(f"the requirement files ({', '.join(names[:3])})")
    if sorted(mine.platforms) != sorted(theirs.platforms):
        out.append(f"the platforms ({' '.join(mine.platforms)} vs {' '.join(theirs.platforms)})")
    ours = {_key(d): d.action.value for d in mine.decisions}
    other = {_key(d): d.action.value for d in theirs.decisions}
    changed = [k for k in sorted(set(ours) | set(other)) if ours.get(k) != other.get(k)]
    if changed:
        shown_ = "; ".join(f"{k} {ours.get(k, '-')} vs {other.get(k, '-')}" for k in changed[:3])
        out.append(f"{len(changed)} decision(s) ({shown_})")
    return out or ["the decisions' reasons or sources"]


def _key(d: Decision) -> str:
    return f"{d.platform} {d.name}=={d.version} (py{d.python})"
