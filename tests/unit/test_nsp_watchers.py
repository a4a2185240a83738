"""Watcher hub: one view per distinct filter, shared by its watchers; the watch quota."""
from __future__ import annotations

import pytest

from meridio.api import model as m
from meridio.nsp import service, watchers


def test_watchers_of_one_filter_share_one_view_object_and_select_runs_once_per_filter() -> None:
    calls: list[str] = []

    def select(key: str):  # type: ignore[no-untyped-def]
        def run(state: tuple[int, ...]) -> tuple[int, ...]:
            calls.append(key)
            return tuple(x for x in state if x % 2 == (key == "odd"))
        return run

    hub: watchers.Hub[tuple[int, ...]] = watchers.Hub((1, 2, 3))
    odd = [hub.subscribe(select("odd"), key="odd") for _ in range(100)]
    even = hub.subscribe(select("even"), key="even")
    assert calls == ["odd", "even"]
    for box in [*odd, even]:
        box.take()
    calls.clear()
    assert hub.publish((1, 2, 3, 5)) == 100  # the even view did not change
    assert calls == ["odd", "even"]
    views = [box.take() for box in odd]
    assert views[0] == (1, 3, 5) and all(v is views[0] for v in views)
    assert even.take() is None


def test_the_last_watcher_of_a_filter_takes_its_view_along() -> None:
    hub: watchers.Hub[int] = watchers.Hub(1)
    a = hub.subscribe(lambda s: s, key="k")
    b = hub.subscribe(lambda s: s, key="k")
    hub.unsubscribe(a)
    assert hub._views == {"k": 1}
    hub.unsubscribe(b)
    assert hub._views == {} and hub._refs == {}


def test_the_encoder_builds_one_message_per_view_object() -> None:
    built: list[object] = []
    encoder = service._Encoder()
    view = (m.Target.make(ips=["10.0.0.1"]),)
    first = encoder.encode(view, lambda v: built.append(v) or object())
    assert all(encoder.encode(view, lambda v: built.append(v) or object()) is first for _ in range(10))
    assert len(built) == 1
    equal_but_other = (m.Target.make(ips=["10.0.0.1"]),)
    assert encoder.encode(equal_but_other, lambda v: object()) is not first


def test_the_quota_counts_per_peer_and_in_total_and_frees_places() -> None:
    quota = watchers.Quota(total=3, per_peer=2)
    quota.acquire("a")
    quota.acquire("a")
    with pytest.raises(watchers.QuotaExceeded, match="this peer already holds 2"):
        quota.acquire("a")
    quota.acquire("b")
    with pytest.raises(watchers.QuotaExceeded, match="already serves 3"):
        quota.acquire("c")
    quota.release("a")
    quota.acquire("c")
    assert len(quota) == 3
    quota.release("nobody")  # unknown peers change nothing
    assert len(quota) == 3
