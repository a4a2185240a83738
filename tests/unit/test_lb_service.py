"""The LB daemon's owner loop on a fake reconciler (named as such): gating, repair passes, availability."""
from __future__ import annotations

import asyncio
import types
from typing import Any

from meridio.loadbalancer import plan
from meridio.loadbalancer.availability import Availability
from meridio.loadbalancer.datapath import ApplyResult
from meridio.loadbalancer.reconciler import Desired, Report
from meridio.loadbalancer.service import LoadBalancer
from tests.unit.test_lb_inputs import FE, complete


class FakeReconciler:
    """Stands for :class:`Reconciler` (no kernel in unit tests): records passes, returns scripted reports."""

    def __init__(self, pending: int = 0, fail: int = 0) -> None:
        self.datapath = types.SimpleNamespace(installed=plan.Installed())
        self.passes: list[Desired] = []
        self.pending_passes = pending
        self.failures = fail

    def start(self) -> None:
        pass

    def reconcile(self, desired: Desired) -> Report:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("kernel said no")
        self.passes.append(desired)
        waiting = self.pending_passes > 0
        self.pending_passes -= 1
        active = {s.name: tuple(t.identifier for t in s.targets) for s in desired.streams}
        pending = {s.name: (9,) if waiting else () for s in desired.streams}
        return Report(active, pending, (), ApplyResult(1, 0.0))

    def lost_routes(self, report: Report, desired: Desired) -> list[int]:
        return []


async def run_for(lb: LoadBalancer, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.ensure_future(lb.run(stop))
    lb.changed()
    await asyncio.sleep(seconds)
    stop.set()
    await task


def make(inputs: Any, reconciler: FakeReconciler) -> LoadBalancer:
    lb = LoadBalancer(inputs, reconciler, Availability("lb-a"), check_interval=0.02, debounce=0)  # type: ignore[arg-type]
    lb._backoff.initial = lb._backoff._next = 0.01
    return lb


async def test_nothing_is_programmed_before_every_watch_has_answered() -> None:
    inputs = complete()
    inputs.frontends = None
    fake = FakeReconciler()
    lb = make(inputs, fake)
    await run_for(lb, 0.1)
    assert fake.passes == [] and lb.availability.available is False


async def test_one_pass_per_change_and_none_while_nothing_changes() -> None:
    fake = FakeReconciler()
    lb = make(complete(), fake)
    await run_for(lb, 0.15)
    assert len(fake.passes) == 1 and lb.availability.available is True


async def test_passes_repeat_while_targets_are_pending() -> None:
    fake = FakeReconciler(pending=3)
    lb = make(complete(), fake)
    await run_for(lb, 0.3)
    assert len(fake.passes) == 4


async def test_a_blocked_lb_reports_unavailable_even_with_targets() -> None:
    inputs = complete(frontends=[])
    lb = make(inputs, FakeReconciler())
    await run_for(lb, 0.1)
    assert lb.availability.available is False and lb.egress is False
    inputs.frontends = [FE]
    await run_for(lb, 0.1)
    assert lb.availability.available is True and lb.egress is True


async def test_a_failed_pass_is_retried() -> None:
    fake = FakeReconciler(fail=2)
    lb = make(complete(), fake)
    await run_for(lb, 0.3)
    assert len(fake.passes) == 1 and lb.report is not None
