"""A night cut into shards: which CI runners build which platforms.

Pure: the plan's decisions, the platforms, the matrix's `runners:` rules and the
durations cache's expectations go in; shards come out. A shard is one CI job: the
platforms it builds, the runner labels it runs on, how many jobs it has and how
long they are expected to take. A shard expected to take longer than its rule's
`budget_minutes` is split into parts (SHARD-1, SHARD-2, ...) that share its
platforms and divide its build items, longest first, so that each runner gets
about the same time; each part then builds the build dependencies its own items
need. `github_matrix` is the form GitHub Actions'
`strategy.matrix` takes as it is; a shard with nothing to build is left out, so a
night where nothing changed starts no runner.
"""

from __future__ import annotations

import fnmatch
import math
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
    items: tuple[str, ...] = ()  # a part of a split shard: its build items (`item_of`)
    part: int = 0  # a split shard's part number, from 1; 0: not split

    def as_dict(self) -> dict[str, object]:
        return {
            "shard": self.name,
            "platforms": list(self.platforms),
            "labels": list(self.labels),
            "native": self.native,
            "jobs": self.jobs,
            "expected_seconds": round(self.expected_seconds, 1),
            **({"part": self.part, "items": list(self.items)} if self.part else {}),
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
            items=tuple(data.get("items", ())),
            part=data.get("part", 0),
        )

    def decisions(self, decisions: Sequence[Decision]) -> tuple[Decision, ...]:
        """What this shard's runner builds from: for a part, its own build items, and
        the decisions that build nothing (upstream, cached) in the first part only,
        so that the merged night reports each once."""
        if not self.part:
            return tuple(decisions)
        mine = set(self.items)
        return tuple(
            d for d in decisions if (item_of(d) in mine if d.action in TO_BUILD else self.part == 1)
        )


def item_of(decision: Decision) -> str:
    """A build item's name in a split shard's list."""
    return f"{decision.platform}/{decision.name}=={decision.version}@py{decision.python}"


@dataclass(frozen=True, kw_only=True)
class _Place:
    shard: str
    labels: tuple[str, ...]
    native: bool
    budget: float | None = None  # seconds


def place(platform: Platform, rules: Sequence[RunnerSpec]) -> _Place:
    """The first rule whose glob matches; else the arch's own shard on its native
    hosted runner, or on an amd64 runner that emulates it."""
    for rule in rules:
        if fnmatch.fnmatchcase(platform.name, rule.platforms):
            budget = rule.budget_minutes * 60.0 if rule.budget_minutes else None
            return _Place(
                shard=rule.shard or platform.arch.value,
                labels=rule.labels,
                native=rule.native,
                budget=budget,
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
    empty ones included (`github_matrix` leaves those out); a shard over its budget
    as its parts."""
    placed = {p.name: place(p, rules) for p in platforms}
    _check_one_runner_per_shard(placed)
    arch = {p.name: p.arch.value for p in platforms}
    costs: dict[str, dict[str, float]] = {}  # shard -> build item -> expected seconds
    for d in decisions:
        where = placed.get(d.platform)
        if where is None or d.action not in TO_BUILD:
            continue
        cost = expected(d.name, arch[d.platform], emulated=not where.native)
        costs.setdefault(where.shard, {})[item_of(d)] = cost
    out: dict[str, Shard] = {}
    for name, where in placed.items():
        have = out.get(where.shard)
        items = costs.get(where.shard, {})
        out[where.shard] = Shard(
            name=where.shard,
            platforms=(*have.platforms, name) if have else (name,),
            labels=have.labels if have else where.labels,
            native=(have.native if have else True) and where.native,
            jobs=len(items),
            expected_seconds=sum(items.values()),
        )
    budgets = {where.shard: where.budget for where in placed.values()}
    return tuple(
        part
        for shard in out.values()
        for part in split(shard, costs.get(shard.name, {}), budgets[shard.name])
    )


def split(shard: Shard, costs: Mapping[str, float], budget: float | None) -> tuple[Shard, ...]:
    """The shard as parts of about `budget` seconds each: its items longest first,
    each to the part with the least so far (ties to the first part and the item's
    name, so the same plan always gives the same parts)."""
    if budget is None or shard.expected_seconds <= budget:
        return (shard,)
    count = min(len(costs), math.ceil(shard.expected_seconds / budget))
    loads = [0.0] * count
    members: list[list[str]] = [[] for _ in range(count)]
    for item, cost in sorted(costs.items(), key=lambda kv: (-kv[1], kv[0])):
        lightest = loads.index(min(loads))
        loads[lightest] += cost
        members[lightest].append(item)
    return tuple(
        Shard(
            name=f"{shard.name}-{number}",
            platforms=shard.platforms,
            labels=shard.labels,
            native=shard.native,
            jobs=len(items),
            expected_seconds=load,
            items=tuple(sorted(items)),
            part=number,
        )
        for number, (items, load) in enumerate(zip(members, loads, strict=True), start=1)
    )


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
    # A part's item list stays in the plan file: a job's matrix values name the job.
    entries = [{k: v for k, v in s.as_dict().items() if k not in {"items", "part"}} for s in busy]
    return {"include": entries}
