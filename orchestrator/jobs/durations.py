"""How long each package took per arch and mode, and how much slower each engine
emulates each arch: the scheduler's and the shards' expectations, learned night
after night and kept in the cache (and, for stateless nights, beside the index)."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

from orchestrator.model import Arch

DEFAULT_NATIVE_SECONDS = 60.0
# How much longer an emulated job takes, used only until a package has been
# built in that mode: 6x for QEMU on this project's hosts (the field reports
# 5-20x; C extensions measured 7-10x in benchmarks/).
EMULATION_FACTOR = 6.0


FACTOR = "factor|"  # durations keys of the learned factors: factor|<engine>|<arch>
COMPILED = "compiled|"  # 1.0: the package's last native build gave a platform wheel
LEARNING = 0.3  # weight of each new observation in a learned factor
MAX_FACTOR = 50.0  # an observation above this is a stall, not emulation's cost


def _key(name: str, arch: str, *, emulated: bool) -> str:
    return f"{name}|{arch}|{'emulated' if emulated else 'native'}"


def _seconds_of(path: Path) -> dict[str, float]:
    """The cache's entries that are finite, non-negative numbers of seconds: a cache
    is a file anyone may have edited, and NaN, Infinity or a string in it would reach
    the shards' JSON and the scheduler's arithmetic. Anything else is forgotten."""
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in loaded.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < math.inf
    }


class Durations:
    """How long each package took per arch last time, and how much slower each engine
    emulates each arch: the scheduler's expectations.

    The emulation factor is learned per (engine, arch): when a package built
    natively on any arch is built emulated for another, the ratio of the two times
    moves that factor (an exponential moving average), so s390x and riscv64, slower
    under QEMU than arm64, get their own. Until then it is EMULATION_FACTOR.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        loaded = _seconds_of(path)
        # Learned factors apart (engine|arch -> factor): a lookup, not a scan of every
        # package's times, on each expectation the job graph asks for.
        self.factors = {k[len(FACTOR) :]: v for k, v in loaded.items() if k.startswith(FACTOR)}
        self.data = {k: v for k, v in loaded.items() if not k.startswith(FACTOR)}
        self._lock = threading.Lock()

    def expected(
        self, name: str, arch: str, *, emulated: bool, guess: float = DEFAULT_NATIVE_SECONDS
    ) -> float:
        """Last time in this mode; else the other mode's, converted; else `guess`
        (native seconds, from the sdist's contents), converted."""
        native = self.data.get(_key(name, arch, emulated=False))
        slow = self.data.get(_key(name, arch, emulated=True))
        factor = self.factor(arch)
        if emulated:
            return slow if slow is not None else (native or self.native(name) or guess) * factor
        if native is not None:
            return native
        return slow / factor if slow is not None else guess

    def factor(self, arch: str, engine: str | None = None) -> float:
        """The learned emulation factor for `arch` on `engine` (on average over the
        engines that emulated it, without one)."""
        found = [
            v
            for k, v in self.factors.items()
            if k == f"{engine}|{arch}" or (engine is None and k.endswith(f"|{arch}"))
        ]
        return sum(found) / len(found) if found else EMULATION_FACTOR

    def learn_kind(self, name: str, *, pure: bool) -> None:
        with self._lock:
            self.data[f"{COMPILED}{name}"] = 0.0 if pure else 1.0

    def compiled(self, name: str) -> bool:
        """Its last native build gave a platform wheel (not worth waiting for)."""
        return self.data.get(f"{COMPILED}{name}") == 1.0

    def native(self, name: str) -> float | None:
        """The package's native time on any arch (a C build costs about the same)."""
        found = [self.data.get(_key(name, a.value, emulated=False)) for a in Arch]
        times = [t for t in found if t is not None]
        return min(times) if times else None

    def record(
        self, name: str, arch: str, seconds: float, *, emulated: bool, engine: str = ""
    ) -> None:
        with self._lock:
            self.data[_key(name, arch, emulated=emulated)] = round(seconds, 1)
            native = self.native(name) if emulated and engine else None
            if native:
                ratio = min(max(seconds / native, 1.0), MAX_FACTOR)
                old = self.factors.get(f"{engine}|{arch}")
                new = ratio if old is None else (1 - LEARNING) * old + LEARNING * ratio
                self.factors[f"{engine}|{arch}"] = round(new, 2)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        factors = {f"{FACTOR}{k}": v for k, v in self.factors.items()}
        self.path.write_text(json.dumps({**self.data, **factors}, indent=1, sort_keys=True))
