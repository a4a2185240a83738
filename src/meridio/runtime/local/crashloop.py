"""When to start a supervised process again, and when to call it failed (sans-IO, injected clock).

A process that exits is started again after a delay from one :class:`~meridio.common.retry.Backoff`
(doubling to a cap). A run that lasted ``stable_after_s`` (or an exit after that long) resets both the
backoff and the count of quick exits. ``fail_after`` quick exits in a row (each within ``stable_after_s``
of its start: a refused database, a bad setting, a missing binary) make the process *failed*: it is
still started again at the capped delay, so fixing the cause (moving a corrupt file aside) heals it
without a restart of the runtime, but the runtime reports the pod as ``Failed`` with the process's last
output line instead of an endless quiet restart loop. Kubernetes calls this CrashLoopBackOff.

:class:`~meridio.runtime.local.supervisor.Supervisor` owns one per process and feeds it the events.
"""
from __future__ import annotations

from meridio.common import clock as clockmod
from meridio.common import retry

__all__ = ["CrashLoop"]


class CrashLoop:
    def __init__(self, backoff: retry.Backoff, *, stable_after_s: float, fail_after: int,
                 clock: clockmod.Clock) -> None:
        self._backoff = backoff
        self._stable_after = stable_after_s
        self.fail_after = fail_after
        self._clock = clock
        self._started: float | None = None
        self.quick_exits = 0
        """Exits in a row, each within ``stable_after_s`` of its start."""

    @property
    def failed(self) -> bool:
        return self.quick_exits >= self.fail_after

    def started(self) -> None:
        """The process was started (or a start was attempted)."""
        self._started = self._clock.monotonic()

    def stable(self) -> None:
        """The process has now run ``stable_after_s``: it is healthy again."""
        self._backoff.reset()
        self.quick_exits = 0

    def exited(self) -> float:
        """The process exited (or could not be started): the delay before the next start, in seconds."""
        ran = self._clock.monotonic() - (self._started if self._started is not None else self._clock.monotonic())
        if ran >= self._stable_after:
            self.stable()
        else:
            self.quick_exits += 1
        return self._backoff.next_delay()

    def replaced(self) -> None:
        """The process is being restarted on purpose (its namespace was made again): no wait."""
        self._backoff.reset()
