"""The TAPA's Prometheus metrics (``MERIDIO_METRICS_ENABLED``, ``/metrics`` on ``MERIDIO_METRICS_PORT``, 2228).

Families (the phases and statuses of :mod:`meridio.tapa.machine`):

- ``meridio_tapa_stream_state{trench,conduit,stream,state}``: 1 for the stream's current phase
  (``idle``, ``opening``, ``open``, ``retrying``), 0 for the others (kube-state-metrics style: one series
  per phase, so ``== 1`` selects streams by phase);
- ``meridio_tapa_stream_status{trench,conduit,stream,status}``: the same for what Watch reports to the
  application (``open``, ``pending``, ``unavailable``, ``undefined``);
- ``meridio_tapa_streams{state}``: open streams per phase;
- ``meridio_tapa_stream_transitions_total{state}``: phase changes since start, by the phase entered.

A stream the application closes leaves the per-stream families. Read at scrape time from the TAPA's
bookkeeping (one owner: the event loop).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from meridio.common import metrics
from meridio.tapa import machine
from meridio.tapa.refs import StreamRef
from meridio.tapa.tap import Tap

__all__ = ["TapaMetrics", "families"]

_STREAM = ["trench", "conduit", "stream"]


def families(streams: Iterable[tuple[StreamRef, machine.StreamState]],
             transitions: Mapping[machine.Phase, int]) -> list[metrics.Family]:
    """Every TAPA family from plain state (pure: the unit tests call it with hand-made values)."""
    states, statuses = [], []
    counts = dict.fromkeys(machine.Phase, 0)
    for ref, state in streams:
        ids = (ref.trench, ref.conduit, ref.stream)
        status = machine.status(state)
        counts[state.phase] += 1
        states += [((*ids, p.value), 1.0 if p is state.phase else 0.0) for p in machine.Phase]
        statuses += [((*ids, s.name.lower()), 1.0 if s is status else 0.0) for s in machine.Status]
    return [
        metrics.gauge("tapa_stream_state", "1 for the stream's current phase of its opener", [*_STREAM, "state"],
                      states),
        metrics.gauge("tapa_stream_status", "1 for the status the TAPA reports for the stream",
                      [*_STREAM, "status"], statuses),
        metrics.gauge("tapa_streams", "Streams open in the TAPA, by phase", ["state"],
                      [((p.value,), counts[p]) for p in machine.Phase]),
        metrics.counter("tapa_stream_transitions", "Phase changes of the streams, by the phase entered", ["state"],
                        [((p.value,), transitions.get(p, 0)) for p in machine.Phase]),
    ]


class TapaMetrics:
    """The TAPA's registry: one collector reading :class:`~meridio.tapa.tap.Tap`."""

    def __init__(self, tap: Tap) -> None:
        self.metrics = metrics.Metrics()
        self._tap = tap
        self.metrics.collect(lambda: families(self._tap.streams(), self._tap.transitions))
