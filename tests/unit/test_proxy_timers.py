"""Delayed release deadlines and one-time credentials, with the time passed in."""
from __future__ import annotations

import itertools

import pytest

from meridio.proxy import deadlines, tokens


def test_a_release_is_due_only_after_the_delay() -> None:
    d: deadlines.Deadlines[str] = deadlines.Deadlines(20.0)
    d.start("t1", now=100.0)
    assert d.pop_due(119.9) == []
    assert d.pop_due(120.0) == ["t1"]
    assert d.pop_due(200.0) == [] and len(d) == 0


def test_a_cancelled_release_never_becomes_due() -> None:
    d: deadlines.Deadlines[str] = deadlines.Deadlines(20.0)
    d.start("t1", now=0.0)
    assert d.cancel("t1") is True and d.cancel("t1") is False
    assert d.pop_due(1000.0) == []


def test_restarting_a_deadline_pushes_it_back() -> None:
    d: deadlines.Deadlines[str] = deadlines.Deadlines(10.0)
    d.start("t1", now=0.0)
    d.start("t1", now=5.0)
    assert d.pop_due(10.0) == [] and d.next_deadline() == 15.0


def test_due_keys_come_out_earliest_first() -> None:
    d: deadlines.Deadlines[str] = deadlines.Deadlines(1.0)
    d.start("late", now=3.0)
    d.start("early", now=1.0)
    assert d.pop_due(10.0) == ["early", "late"]


def test_a_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="^delay: must be >= 0"):
        deadlines.Deadlines(-1.0)


def counter_tokens() -> tokens.TokenStore[str]:
    n = itertools.count()
    return tokens.TokenStore(10.0, new_token=lambda: f"tok{next(n)}", limit=3)


def test_a_credential_can_be_used_once() -> None:
    store = counter_tokens()
    tok = store.issue("ns-of-pid-42", now=0.0)
    assert store.take(tok, now=1.0) == "ns-of-pid-42"
    assert store.take(tok, now=1.0) is None


def test_an_expired_credential_is_refused_and_handed_back_for_cleanup() -> None:
    store = counter_tokens()
    tok = store.issue("fd", now=0.0)
    assert store.take(tok, now=10.5) is None
    assert store.expire(now=10.5) == ["fd"] and len(store) == 0


def test_an_unknown_credential_is_refused() -> None:
    assert counter_tokens().take("guess", now=0.0) is None


def test_outstanding_credentials_are_bounded() -> None:
    store = counter_tokens()
    for _ in range(3):
        store.issue("x", now=0.0)
    with pytest.raises(OverflowError, match="too many outstanding credentials"):
        store.issue("x", now=0.0)


def test_random_tokens_are_long_and_distinct() -> None:
    a, b = tokens.random_token(), tokens.random_token()
    assert a != b and len(a) >= 32
