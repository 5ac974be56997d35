"""A night cut into shards: which CI runners build which platforms.

Pure: the plan's decisions, the platforms, the matrix's `runners:` rules and the
durations cache's expectations go in; shards come out. A shard is one CI job: the
platforms it builds, the runner labels it runs on, how many jobs it has and how
long they are expected to take. `github_matrix` is the form GitHub Actions'
`strategy.matrix` takes as it is; a shard with nothing to build is left out, so a
night where nothing changed starts no runner.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.config.matrix import Platform
from orchestrator.config.schema import RunnerSpec
from orchestrator.core.errors import InputError
from orchestrator.core.quoting import shown
from orchestrator.model import Action, Arch
from orchestrator.plan.decide import Decision

# Hosted runners that are native for an arch (GitHub's names; OpenDev's nodes are
# named in its own layout). An arch without one is emulated on an amd64 runner.
NATIVE_LABELS: Mapping[Arch, tuple[str, ...]] = {
    Arch.AMD64: ("ubuntu-24.04",),
    Arch.ARM64: ("ubuntu-24.04-arm",),
}
EMULATING_LABELS = NATIVE_LABELS[Arch.AMD64]
TO_BUILD = frozenset({Action.BUILD, Action.REBUILD})


class Expected(Protocol):
    """A job's expected seconds: its project, its arch, emulated or not."""

    def __call__(self, name: str, arch: str, /, *, emulated: bool) -> float: ...


@dataclass(frozen=True, kw_only=True)
class Shard:
    name: str
    platforms: tuple[str, ...]
    labels: tuple[str, ...]
    native: bool  # False: the runners emulate (some of) its platforms' arch
    jobs: int = 0  # wheels to build
    expected_seconds: float = 0.0  # the jobs' expected durations, added up

    def as_dict(self) -> dict[str, object]:
        return {
            "shard": self.name,
            "platforms": list(self.platforms),
            "labels": list(self.labels),
            "native": self.native,
            "jobs": self.jobs,
            "expected_seconds": round(self.expected_seconds, 1),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Shard:
        """From a plan file already checked against its schema."""
        return cls(
            name=data["shard"],
            platforms=tuple(data["platforms"]),
            labels=tuple(data["labels"]),
            native=data["native"],
            jobs=data["jobs"],
            expected_seconds=data["expected_seconds"],
        )


@dataclass(frozen=True, kw_only=True)
class _Place:
    shard: str
    labels: tuple[str, ...]
    native: bool


def place(platform: Platform, rules: Sequence[RunnerSpec]) -> _Place:
    """The first rule whose glob matches; else the arch's own shard on its native
    hosted runner, or on an amd64 runner that emulates it."""
    for rule in rules:
        if fnmatch.fnmatchcase(platform.name, rule.platforms):
            return _Place(
                shard=rule.shard or platform.arch.value, labels=rule.labels, native=rule.native
            )
    labels = NATIVE_LABELS.get(platform.arch)
    return _Place(
        shard=platform.arch.value, labels=labels or EMULATING_LABELS, native=labels is not None
    )


def shards_of(
    decisions: Sequence[Decision],
    platforms: Sequence[Platform],
    rules: Sequence[RunnerSpec],
    expected: Expected,
) -> tuple[Shard, ...]:
    """Every shard of the night in the order its first platform comes in the matrix,
    empty ones included (`github_matrix` leaves those out)."""
    placed = {p.name: place(p, rules) for p in platforms}
    arch = {p.name: p.arch.value for p in platforms}
    jobs: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for d in decisions:
        where = placed.get(d.platform)
        if where is None or d.action not in TO_BUILD:
            continue
        jobs[where.shard] = jobs.get(where.shard, 0) + 1
        cost = expected(d.name, arch[d.platform], emulated=not where.native)
        seconds[where.shard] = seconds.get(where.shard, 0.0) + cost
    _check_one_runner_per_shard(placed)
    out: dict[str, Shard] = {}
    for name, where in placed.items():
        have = out.get(where.shard)
        members = (*have.platforms, name) if have else (name,)
        out[where.shard] = Shard(
            name=where.shard,
            platforms=members,
            labels=have.labels if have else where.labels,
            native=(have.native if have else True) and where.native,
            jobs=jobs.get(where.shard, 0),
            expected_seconds=seconds.get(where.shard, 0.0),
        )
    return tuple(out.values())


def _check_one_runner_per_shard(placed: Mapping[str, _Place]) -> None:
    """A shard runs on one kind of runner: a rule that names a default arch's shard
    (`shard: amd64` for arm64 platforms) with other labels would have the first
    platform's runner decide silently, and arm64 land on an amd64 runner."""
    first: dict[str, tuple[str, _Place]] = {}
    for name, where in placed.items():
        other, before = first.setdefault(where.shard, (name, where))
        if before.labels != where.labels:
            raise InputError(
                f"runners: shard {shown(where.shard)} gets {other} on runners labelled "
                f"{list(before.labels)} and {name} on {list(where.labels)}; a shard runs "
                "on one kind of runner",
                hint="give the rule a shard name of its own (not an arch's default shard)",
            )


def github_matrix(shards: Sequence[Shard]) -> dict[str, list[dict[str, object]]]:
    """`strategy.matrix` for GitHub Actions (`fromJSON(...)`): one entry per shard with
    something to build, the longest first so that it starts first."""
    busy = sorted((s for s in shards if s.jobs), key=lambda s: -s.expected_seconds)
    return {"include": [s.as_dict() for s in busy]}
