"""Identifier allocation of TAPA targets (pure)."""
from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meridio.api import model
from meridio.tapa import identifiers

STREAM = model.Stream("s", model.Conduit("c", model.Trench("t")))


def _target(ips: tuple[str, ...], identifier: str | None, *, status: model.TargetStatus = model.TargetStatus.ENABLED,
            type: model.TargetType = model.TargetType.DEFAULT) -> model.Target:
    return model.Target.make(ips=ips, context={} if identifier is None else {"identifier": identifier},
                             status=status, type=type, stream=STREAM)


def test_identifiers_in_use_count_every_status_but_not_our_own_entries() -> None:
    targets = [
        _target(("172.16.1.2/24",), "3"),
        _target(("172.16.1.3/24",), "7", status=model.TargetStatus.DISABLED),
        _target(("172.16.1.6/24", "fd00:0:0:1::6/64"), "9"),  # ours
        _target(("fd00:0:0:1::6/64",), "11"),  # a stale entry of ours (one of our addresses)
    ]
    assert identifiers.in_use(targets, ("172.16.1.6/24", "fd00:0:0:1::6/64")) == {3, 7}


def test_entries_without_a_numeric_identifier_or_of_another_type_are_not_in_use() -> None:
    targets = [_target(("a",), None), _target(("b",), "x"),
               _target(("c",), "5", type=model.TargetType.FRONTEND)]
    assert identifiers.in_use(targets, ()) == frozenset()


def test_the_preferred_identifier_is_kept_when_it_is_free() -> None:
    assert identifiers.choose(10, {1, 2}, random.Random(1), prefer=7) == 7


def test_a_taken_preferred_identifier_is_replaced_by_a_free_one() -> None:
    assert identifiers.choose(3, {1, 3}, random.Random(1), prefer=3) == 2


def test_the_only_free_identifier_is_found_even_when_random_draws_miss_it() -> None:
    assert identifiers.choose(1000, set(range(1, 1001)) - {500}, random.Random(0)) == 500


def test_all_identifiers_taken_raises_meridios_error() -> None:
    with pytest.raises(identifiers.NoIdentifierAvailable, match="^no identifier available to register the target$"):
        identifiers.choose(2, {1, 2}, random.Random(0))


def test_max_targets_zero_means_one_hundred() -> None:
    assert identifiers.effective_max_targets(0) == 100
    with pytest.raises(identifiers.NoIdentifierAvailable):
        identifiers.choose(0, set(range(1, 101)), random.Random(0))
    assert identifiers.choose(0, set(range(1, 100)), random.Random(0)) == 100


def test_identifiers_out_of_range_do_not_count_against_max_targets() -> None:
    assert identifiers.choose(1, {5, 6}, random.Random(0)) == 1


def test_random_choices_spread_over_the_whole_range() -> None:
    rng = random.Random(42)
    seen = {identifiers.choose(5, set(), rng) for _ in range(200)}
    assert seen == {1, 2, 3, 4, 5}


@given(max_targets=st.integers(1, 50), used=st.sets(st.integers(1, 60)), seed=st.integers(0, 2**32))
def test_a_chosen_identifier_is_always_free_and_in_range(max_targets: int, used: set[int], seed: int) -> None:
    taken = {i for i in used if i <= max_targets}
    if len(taken) >= max_targets:
        with pytest.raises(identifiers.NoIdentifierAvailable):
            identifiers.choose(max_targets, used, random.Random(seed))
        return
    chosen = identifiers.choose(max_targets, used, random.Random(seed))
    assert 1 <= chosen <= max_targets and chosen not in used
