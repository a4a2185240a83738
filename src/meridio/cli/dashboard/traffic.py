"""Per-target traffic for the dashboard: the LB pods' target hit counters, summed per target, as rates.

Each FE+LB pod exposes ``meridio_lb_target_hit_packets_total`` and ``meridio_lb_target_hit_bytes_total``
(labels ``trench, conduit, stream, identifier``: nft counters, read at scrape). A target is hit through
every LB replica of its attractor, so its traffic is the sum over the LB pods. :func:`target_hits`
parses one pod's Prometheus text; :class:`Meter` keeps the previous sample per pod and turns two
samples into packets and bytes per second, treating a counter that went down as restarted from zero
(as Prometheus' ``rate()`` does). Pure: the text and the time are passed in.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from prometheus_client import parser

__all__ = ["BYTES_METRIC", "PACKETS_METRIC", "Hits", "Meter", "Rate", "TargetKey", "target_hits"]

PACKETS_METRIC = "meridio_lb_target_hit_packets_total"
BYTES_METRIC = "meridio_lb_target_hit_bytes_total"


@dataclasses.dataclass(frozen=True, order=True)
class TargetKey:
    trench: str
    conduit: str
    stream: str
    identifier: str


@dataclasses.dataclass(frozen=True)
class Hits:
    """Counter values: packets and bytes sent to a target so far."""

    packets: float = 0.0
    bytes: float = 0.0

    def __add__(self, other: Hits) -> Hits:
        return Hits(self.packets + other.packets, self.bytes + other.bytes)


@dataclasses.dataclass(frozen=True)
class Rate:
    """A target's traffic between two samples, and its counters (summed over the LB pods) at the last one."""

    packets_per_s: float | None
    """None until two samples of the same pod were taken."""
    bytes_per_s: float | None
    packets: float
    bytes: float


def target_hits(text: str) -> dict[TargetKey, Hits]:
    """The target hit counters of one pod's Prometheus text; ``ValueError`` if the text does not parse."""
    out: dict[TargetKey, Hits] = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name not in (PACKETS_METRIC, BYTES_METRIC):
                continue
            labels = sample.labels
            key = TargetKey(labels.get("trench", ""), labels.get("conduit", ""), labels.get("stream", ""),
                            labels.get("identifier", ""))
            hit = Hits(packets=sample.value) if sample.name == PACKETS_METRIC else Hits(bytes=sample.value)
            out[key] = out.get(key, Hits()) + hit
    return out


def _increase(cur: float, prev: float) -> float:
    return cur - prev if cur >= prev else cur  # the pod's counters restarted from zero


class Meter:
    """Rates between successive samples of every LB pod; one owner (the dashboard's poller) calls it."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, dict[TargetKey, Hits]]] = {}

    def update(self, samples: Mapping[str, Mapping[TargetKey, Hits] | None], now_s: float) -> dict[TargetKey, Rate]:
        """Take one sample per pod (None: the pod did not answer); the rate and counters of every target."""
        totals: dict[TargetKey, Hits] = {}
        increases: dict[TargetKey, Hits] = {}
        for pod, hits in samples.items():
            if hits is None:
                continue
            before = self._last.get(pod)
            for key, value in hits.items():
                totals[key] = totals.get(key, Hits()) + value
                if before is None or now_s <= before[0]:
                    continue
                prev, dt = before[1].get(key, Hits()), now_s - before[0]  # a new target counts from zero
                per_s = Hits(_increase(value.packets, prev.packets) / dt, _increase(value.bytes, prev.bytes) / dt)
                increases[key] = increases.get(key, Hits()) + per_s
            self._last[pod] = (now_s, dict(hits))
        for pod in [p for p in self._last if p not in samples]:
            del self._last[pod]  # a pod that is gone starts afresh if it comes back
        return {key: Rate(packets_per_s=increases[key].packets if key in increases else None,
                          bytes_per_s=increases[key].bytes if key in increases else None,
                          packets=total.packets, bytes=total.bytes) for key, total in totals.items()}
