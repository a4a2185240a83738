"""The nftables side of the load balancer: owns ``table inet meridio-lb`` in one network namespace.

Thin adapter over :mod:`meridio.kernel.nftables` and the pure :mod:`plan`: :meth:`NftDataPath.load`
reads back what is installed (also after a restart of the daemon: nothing is flushed), and
:meth:`NftDataPath.apply` turns it into the desired :class:`~nftobjects.Ruleset` with ONE batch holding
only the difference. A refused batch changes nothing in the kernel and nothing in the remembered state.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

from meridio.common import log as logmod
from meridio.kernel import nftables
from meridio.loadbalancer import plan as planmod
from meridio.loadbalancer.nftobjects import FAMILY, TABLE, Ruleset

__all__ = ["NftDataPath", "CounterValue", "ApplyResult", "moved_buckets", "add_counters"]


@dataclasses.dataclass(frozen=True)
class CounterValue:
    packets: int
    bytes: int


def add_counters(*parts: Mapping[str, CounterValue]) -> dict[str, CounterValue]:
    """Counters of the same name summed: the nftables path's and the fast path's counts of one flow or target."""
    out: dict[str, CounterValue] = {}
    for part in parts:
        for name, c in part.items():
            have = out.get(name)
            out[name] = c if have is None else CounterValue(have.packets + c.packets, have.bytes + c.bytes)
    return out


@dataclasses.dataclass(frozen=True)
class ApplyResult:
    commands: int
    """Commands in the batch (0: nothing differed, nothing was sent)."""
    seconds: float
    moved: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """Bucket map name -> buckets whose target changed in this batch (only maps that changed)."""


def moved_buckets(installed: planmod.Installed, desired: Ruleset) -> dict[str, int]:
    """Per bucket map: how many buckets point elsewhere (or nowhere) after the change; a new map counts all."""
    out = {}
    for name, b in desired.buckets.items():
        old = installed.buckets.get(name, ("", ()))[1]
        if old == b.marks:
            continue
        if not old or not b.marks:
            out[name] = sum(1 for mark in (old or b.marks) if mark)
        else:
            out[name] = sum(1 for a, c in zip(old, b.marks) if a != c)
    return out


class NftDataPath:
    def __init__(self, nft: nftables.Nft, *, log: logmod.Logger = logmod.null) -> None:
        self._nft = nft
        self._log = log
        self.installed = planmod.Installed()

    def load(self) -> planmod.Installed:
        """Read back the installed table (an absent table is an empty :class:`~plan.Installed`)."""
        if not self._nft.table_exists(FAMILY, TABLE):
            self.installed = planmod.Installed()
        else:
            self.installed = planmod.installed_from_json(self._nft.list_json(f"table {FAMILY} {TABLE}"))
        return self.installed

    def plan(self, desired: Ruleset) -> list[str]:
        return planmod.plan(self.installed, desired)

    def apply(self, desired: Ruleset) -> ApplyResult:
        """Apply the difference as one transaction; raises :class:`~meridio.kernel.nftables.NftError`."""
        commands = self.plan(desired)
        moved = moved_buckets(self.installed, desired) if commands else {}
        start = time.perf_counter()
        if commands:
            self._nft.apply(commands)
        self.installed = planmod.Installed.of(desired)
        return ApplyResult(len(commands), time.perf_counter() - start, moved)

    def check(self, desired: Ruleset) -> None:
        """Evaluate the batch that :meth:`apply` would send without applying it (raises NftError)."""
        commands = self.plan(desired)
        if commands:
            self._nft.check(commands)

    def counters(self) -> dict[str, CounterValue]:
        """Named counters of the table (``flow-<stream>-<flow>``, ``tgt-<fwmark>``)."""
        if not self._nft.table_exists(FAMILY, TABLE):
            return {}
        out = {}
        for obj in self._nft.list_json(f"counters table {FAMILY} {TABLE}"):
            body = obj.get("counter")
            if body:
                out[body["name"]] = CounterValue(int(body["packets"]), int(body["bytes"]))
        return out

    def remove(self) -> None:
        """Delete the whole table (used when the daemon is told to clean up, never on start)."""
        if self._nft.table_exists(FAMILY, TABLE):
            self._nft.apply([f"delete table {FAMILY} {TABLE}"])
        self.installed = planmod.Installed()
