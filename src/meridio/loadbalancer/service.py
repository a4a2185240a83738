"""The LB daemon's owner task: the one place that turns :class:`~inputs.Inputs` into kernel state.

Watch tasks only update :class:`~inputs.Inputs` and call :meth:`LoadBalancer.changed`; this task
debounces, computes the desired state, runs :meth:`Reconciler.reconcile` in a worker thread (the kernel
calls block; an M=999983 map takes seconds) and publishes availability and health. It also re-runs
while targets are pending or a route vanished, checked on every link/address/route notification
(:meth:`LoadBalancer.kernel_changed`) and every ``check_interval``, and retries with backoff when the
kernel refuses something unexpectedly. It never flushes anything on start.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from meridio.common import health as healthmod
from meridio.common import log as logmod
from meridio.common.retry import Backoff
from meridio.loadbalancer.availability import Availability
from meridio.loadbalancer.inputs import Inputs
from meridio.loadbalancer.reconciler import Desired, Reconciler, Report

__all__ = ["LoadBalancer"]


class LoadBalancer:
    def __init__(self, inputs: Inputs, reconciler: Reconciler, availability: Availability, *,
                 health: healthmod.Health | None = None, check_interval: float = 1.0, debounce: float = 0.02,
                 on_egress: Callable[[bool], None] | None = None,
                 on_reconciled: Callable[[Report, float], None] | None = None,
                 log: logmod.Logger = logmod.null) -> None:
        self.inputs = inputs
        self.reconciler = reconciler
        self.availability = availability
        self.health = health
        self.check_interval = check_interval
        self.debounce = debounce
        self.on_egress = on_egress
        self.on_reconciled = on_reconciled
        self.report: Report | None = None
        self.egress: bool | None = None
        self._log = log
        self._wake = asyncio.Event()
        self._problems: set[str] = set()
        self._desired: Desired | None = None
        self._backoff = Backoff(initial=0.5, cap=10.0)

    @property
    def desired(self) -> Desired | None:
        """The desired state of the last reconcile that ran."""
        return self._desired

    def changed(self) -> None:
        """Something in :attr:`inputs` changed: reconcile soon."""
        self._wake.set()

    def kernel_changed(self) -> None:
        """A link, address or route changed: check pending targets and lost routes soon."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.to_thread(self.reconciler.start)
        installed = self.reconciler.datapath.installed
        self.availability.set(any(marks for _, marks in installed.buckets.values()))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                waking = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({waking, stopping}, timeout=self._next_timeout(),
                                   return_when=asyncio.FIRST_COMPLETED)
                waking.cancel()
                if stop.is_set():
                    break
                await asyncio.sleep(self.debounce)
                self._wake.clear()
                await self._pass()
        finally:
            stopping.cancel()
            with contextlib.suppress(BaseException):
                await stopping

    def _next_timeout(self) -> float:
        return self.check_interval

    async def _pass(self) -> None:
        if not self.inputs.ready():
            return
        desired, problems = self.inputs.desired()
        self._log_problems(problems)
        if desired == self._desired and self.report is not None and not await self._needs_repair(desired):
            return
        start = time.perf_counter()
        try:
            report = await asyncio.to_thread(self.reconciler.reconcile, desired)
        except Exception as exc:  # the kernel refused something we did not foresee: retry later
            delay = self._backoff.next_delay()
            self._log.exception("reconcileFailed", error=repr(exc), retryIn=delay)
            await asyncio.sleep(delay)
            self._wake.set()
            return
        self._backoff.reset()
        if self.on_reconciled is not None:
            self.on_reconciled(report, time.perf_counter() - start)
        self._published(desired, report)

    async def _needs_repair(self, desired: Desired) -> bool:
        report = self.report
        if report is None:
            return True
        if any(report.pending.values()):
            return True
        return bool(await asyncio.to_thread(self.reconciler.lost_routes, report, desired))

    def _published(self, desired: Desired, report: Report) -> None:
        previous = self.report
        self._desired, self.report = desired, report
        if previous is None or previous.active != report.active or previous.pending != report.pending:
            fast = report.fastpath
            self._log.info("targetsProgrammed", active={s: list(i) for s, i in report.active.items()},
                           pending={s: list(i) for s, i in report.pending.items() if i},
                           commands=report.apply.commands, seconds=round(report.apply.seconds, 4),
                           fastpath=fast is not None, fastpathBuckets=fast.buckets_written if fast else 0,
                           fastpathEntries=fast.entries_written if fast else 0,
                           fastpathSeconds=round(fast.seconds, 4) if fast else 0.0)
        blocked = self.inputs.blocked()
        self.availability.set(report.has_targets and not blocked)
        if self.egress != (not blocked):
            self.egress = not blocked
            self._log.info("egressChanged", egress=self.egress, reason="frontendPresent" if self.egress
                           else "frontendAbsent")
            if self.on_egress is not None:
                self.on_egress(self.egress)
        if self.health is not None:
            self.health.set_serving(healthmod.EGRESS, not blocked)
            self.health.set_serving(healthmod.STREAM, bool(desired.streams))
            self.health.set_serving(healthmod.FLOW, bool(desired.flows))

    def _log_problems(self, problems: Sequence[Exception]) -> None:
        current = {str(p) for p in problems}
        for text in sorted(current - self._problems):
            self._log.warning("inputSkipped", reason="invalidInput", error=text)
        self._problems = current
