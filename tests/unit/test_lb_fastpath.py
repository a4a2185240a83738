"""The eBPF fast path's pure parts: the Maglev C helper against the Python loop, the map encoding of
flows, VIP pieces, NATs and streams, slot keeping, and nft's jhash in Python.

Real: the C helper (built by ``run.sh setup``; its absence fails the test, it is not skipped).
Nothing here touches the kernel: the program itself runs in ``tests/netns/test_lb_fastpath.py``.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meridio.kernel import native
from meridio.loadbalancer import maglev


def _perms(ids: list[int], m: int, max_targets: int) -> tuple[list[int], list[int]]:
    perms = [maglev.permutation(i, m, max_targets) for i in ids]
    return [p[0] for p in perms], [p[1] for p in perms]


@pytest.mark.parametrize(("max_targets", "ids"), [
    (1, [1]), (3, [1, 2, 3]), (100, list(range(1, 101))), (100, [2, 50, 99]), (1000, list(range(1, 1001, 7))),
], ids=["one", "three", "full-100", "sparse-100", "every-7th-of-1000"])
def test_maglev_c_helper_fills_the_same_table_as_the_python_loop(max_targets: int, ids: list[int]) -> None:
    assert native.available(), "kernel/native/libmeridio_native.so is not built: run ./run.sh setup"
    m = maglev.table_size(max_targets)
    offsets, skips = _perms(ids, m, max_targets)
    c_table = tuple(native.maglev_fill(ids, offsets, skips, m))
    assert c_table == maglev.populate_python(ids, offsets, skips, m)
    assert maglev.populate(ids, m, max_targets) == c_table


@settings(max_examples=40, deadline=None)
@given(st.sets(st.integers(1, 50), min_size=1, max_size=50))
def test_maglev_c_helper_equals_python_for_any_target_set(ids: set[int]) -> None:
    m = maglev.table_size(50)
    order = sorted(ids)
    offsets, skips = _perms(order, m, 50)
    assert tuple(native.maglev_fill(order, offsets, skips, m)) == maglev.populate_python(order, offsets, skips, m)


@pytest.mark.parametrize(("ids", "offsets", "skips", "m"), [
    ([1], [0], [0], 7), ([1], [7], [1], 7), ([1, 2], [0], [1, 1], 7), ([], [], [], 7)],
    ids=["zero-skip", "offset-beyond-m", "lengths-differ", "no-targets"])
def test_maglev_c_helper_refuses_arguments_that_describe_no_table(ids: list[int], offsets: list[int],
                                                                  skips: list[int], m: int) -> None:
    with pytest.raises(native.NativeError):
        native.maglev_fill(ids, offsets, skips, m)
