"""The restart policy of supervised processes, on a fake clock: delays double to a cap, quick exits in a
row make a process failed, a stable run heals it."""
from __future__ import annotations

from meridio.common import retry
from meridio.common.clock import FakeClock
from meridio.runtime.local import crashloop


def _policy(clock: FakeClock, fail_after: int = 3) -> crashloop.CrashLoop:
    return crashloop.CrashLoop(retry.Backoff(initial=0.5, cap=4.0), stable_after_s=10.0, fail_after=fail_after,
                               clock=clock)


def _quick_exit(policy: crashloop.CrashLoop, clock: FakeClock, ran_s: float = 1.0) -> float:
    policy.started()
    clock.advance(ran_s)
    return policy.exited()


def test_quick_exits_double_the_delay_up_to_the_cap() -> None:
    clock = FakeClock()
    policy = _policy(clock, fail_after=100)
    assert [_quick_exit(policy, clock) for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


def test_the_nth_quick_exit_in_a_row_makes_the_process_failed_and_it_is_still_retried() -> None:
    clock = FakeClock()
    policy = _policy(clock, fail_after=3)
    _quick_exit(policy, clock)
    _quick_exit(policy, clock)
    assert not policy.failed and policy.quick_exits == 2
    delay = _quick_exit(policy, clock)
    assert policy.failed and policy.quick_exits == 3 and delay == 2.0
    assert _quick_exit(policy, clock) == 4.0 and policy.failed


def test_an_exit_after_a_stable_run_resets_the_delay_and_the_count() -> None:
    clock = FakeClock()
    policy = _policy(clock)
    for _ in range(3):
        _quick_exit(policy, clock)
    assert policy.failed
    assert _quick_exit(policy, clock, ran_s=10.0) == 0.5
    assert not policy.failed and policy.quick_exits == 0


def test_a_process_that_has_run_long_enough_is_no_longer_failed() -> None:
    clock = FakeClock()
    policy = _policy(clock)
    for _ in range(4):
        _quick_exit(policy, clock)
    policy.started()
    policy.stable()
    assert not policy.failed
    clock.advance(1.0)  # its next exit, even a quick one, starts the count again
    assert policy.exited() == 0.5 and policy.quick_exits == 1


def test_a_start_that_failed_at_once_counts_as_a_quick_exit() -> None:
    clock = FakeClock()
    policy = _policy(clock, fail_after=1)
    policy.started()
    assert policy.exited() == 0.5 and policy.failed


def test_a_replaced_process_starts_again_without_the_accumulated_delay() -> None:
    clock = FakeClock()
    policy = _policy(clock, fail_after=100)
    for _ in range(4):
        _quick_exit(policy, clock)
    policy.replaced()
    assert _quick_exit(policy, clock) == 0.5
