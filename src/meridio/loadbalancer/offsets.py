"""Per-stream identifier offsets (reference §3.4): fwmark = routing table = identifier + offset.

Each stream reserves ``[offset, offset + max_targets)`` first fit from ``start`` (Meridio:
``NSM_IDENTIFIER_OFFSET_START`` = 5000), and releases it when it goes; its fwmarks are
``offset + 1 .. offset + max_targets``. Reservations found in the kernel after a restart are restored
first, so a restarted daemon keeps every fwmark (and every route) it had. Pure.
"""
from __future__ import annotations

__all__ = ["OffsetAllocator"]


class OffsetAllocator:
    def __init__(self, start: int = 5000) -> None:
        self.start = start
        self._streams: dict[str, tuple[int, int]] = {}

    def __repr__(self) -> str:
        return f"OffsetAllocator(start={self.start}, streams={self._streams!r})"

    @property
    def reservations(self) -> dict[str, tuple[int, int]]:
        """stream -> (offset, size)."""
        return dict(self._streams)

    def offset_of(self, stream: str) -> int | None:
        entry = self._streams.get(stream)
        return entry[0] if entry else None

    def _free(self, offset: int, size: int, ignore: str | None = None) -> bool:
        return all(offset + size <= o or o + s <= offset
                   for name, (o, s) in self._streams.items() if name != ignore)

    def restore(self, stream: str, offset: int, size: int) -> bool:
        """Take back a reservation found installed; False if it collides with one already held."""
        if offset < self.start or not self._free(offset, size, ignore=stream):
            return False
        self._streams[stream] = (offset, size)
        return True

    def reserve(self, stream: str, size: int) -> int:
        """The stream's offset: kept if it has one of this size, else the first free range from start."""
        if size < 1:
            raise ValueError(f"a stream reserves at least one identifier, not {size}")
        held = self._streams.get(stream)
        if held and held[1] == size:
            return held[0]
        self._streams.pop(stream, None)
        offset = self.start
        for o, s in sorted(self._streams.values()):
            if offset + size <= o:
                break
            offset = max(offset, o + s)
        self._streams[stream] = (offset, size)
        return offset

    def release(self, stream: str) -> None:
        self._streams.pop(stream, None)
