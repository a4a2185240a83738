"""C helpers built at set-up (``run.sh setup`` compiles ``kernel/native/*.c`` into
``kernel/native/libmeridio_native.so``), loaded with ctypes.

Only the Maglev fill loop lives there: filling a table of M = 999983 buckets (max-targets 10 000) takes
about 2 s in Python and well under one in C. Callers use :func:`maglev_fill` when :func:`available`
says the library was built, and their own pure-Python code otherwise, which must give the same result
(``tests/unit/test_lb_fastpath.py`` checks both give the same tables).
"""
from __future__ import annotations

import array
import ctypes
import functools
import pathlib
from collections.abc import Sequence

__all__ = ["LIBRARY", "NativeError", "available", "maglev_fill"]

LIBRARY = pathlib.Path(__file__).with_name("native") / "libmeridio_native.so"


class NativeError(RuntimeError):
    """The C helper refused its arguments."""


@functools.lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL | None:
    if not LIBRARY.is_file():
        return None
    try:
        lib = ctypes.CDLL(str(LIBRARY))
    except OSError:
        return None
    u32p = ctypes.POINTER(ctypes.c_uint32)
    lib.meridio_maglev_fill.argtypes = [u32p, u32p, u32p, ctypes.c_uint32, ctypes.c_uint32, u32p]
    lib.meridio_maglev_fill.restype = ctypes.c_int
    return lib


def available() -> bool:
    """True when the library was built (``run.sh setup``) and loads."""
    return _lib() is not None


def _u32(values: Sequence[int]) -> array.array[int]:
    return array.array("I", values)


def maglev_fill(ids: Sequence[int], offsets: Sequence[int], skips: Sequence[int], m: int) -> array.array[int]:
    """The M-entry Maglev table for targets ``ids`` (in turn order) with their permutations."""
    lib = _lib()
    if lib is None:
        raise NativeError(f"{LIBRARY} is not built (run ./run.sh setup)")
    if not (len(ids) == len(offsets) == len(skips)) or not ids or m < 1:
        raise NativeError("ids, offsets and skips must be non-empty and of one length, and m >= 1")
    table = array.array("I", bytes(4 * m))
    a, o, s = _u32(ids), _u32(offsets), _u32(skips)
    u32p = ctypes.POINTER(ctypes.c_uint32)

    def ptr(buf: array.array[int]) -> ctypes._Pointer[ctypes.c_uint32]:
        return ctypes.cast(buf.buffer_info()[0], u32p)

    if lib.meridio_maglev_fill(ptr(a), ptr(o), ptr(s), len(ids), m, ptr(table)) != 0:
        raise NativeError(f"the Maglev fill refused its arguments (m={m}, {len(ids)} targets)")
    return table
