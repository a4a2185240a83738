"""Per-stream identifier offsets: first fit from the start, released with the stream, restored on restart."""
from __future__ import annotations

import pytest

from meridio.loadbalancer.offsets import OffsetAllocator


def test_streams_reserve_max_targets_wide_ranges_first_fit_from_5000() -> None:
    alloc = OffsetAllocator(5000)
    assert alloc.reserve("a", 100) == 5000
    assert alloc.reserve("b", 100) == 5100
    alloc.release("a")
    assert alloc.reserve("c", 50) == 5000
    assert alloc.reserve("d", 100) == 5200  # 5050..5099 is too small
    assert alloc.reserve("e", 50) == 5050


def test_a_stream_keeps_its_offset_until_its_size_changes() -> None:
    alloc = OffsetAllocator(5000)
    alloc.reserve("a", 10)
    alloc.reserve("b", 10)
    assert alloc.reserve("a", 10) == 5000
    assert alloc.reserve("a", 20) == 5020
    assert alloc.reservations == {"b": (5010, 10), "a": (5020, 20)}


def test_reservations_found_installed_are_restored_unless_they_collide() -> None:
    alloc = OffsetAllocator(5000)
    assert alloc.restore("b", 5100, 100)
    assert not alloc.restore("c", 5150, 10)
    assert not alloc.restore("d", 4000, 10)
    assert alloc.reserve("a", 100) == 5000
    assert alloc.reserve("b", 100) == 5100
    assert alloc.reserve("c", 10) == 5200


def test_a_stream_reserves_at_least_one_identifier() -> None:
    with pytest.raises(ValueError, match="at least one"):
        OffsetAllocator().reserve("a", 0)
