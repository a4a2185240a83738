"""The ConfigurationManager's core: the current configuration and what each watch kind selects from it.

``WatchTrench`` answers ``TrenchResponse{trench}`` with the configured trench when it matches the
filter, and with the trench **unset** when no trench is configured (empty or missing file) or the filter
does not match — exactly what Meridio sends (its registry returns a nil trench). Watchers therefore see
"no trench" as ``None`` and get the trench as soon as it appears.

The other kinds answer the list of configured objects matching the filter, in configuration order
(the ConfigMap lists are sorted by name).
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from meridio.api import model
from meridio.nsp import filters, watchers

__all__ = ["Kind", "select", "ConfigurationManager"]


class Kind(enum.Enum):
    TRENCH = "trench"
    CONDUIT = "conduit"
    STREAM = "stream"
    FLOW = "flow"
    VIP = "vip"
    ATTRACTOR = "attractor"
    GATEWAY = "gateway"


_LISTS: dict[Kind, tuple[str, Callable[[Any, Any], bool]]] = {
    Kind.CONDUIT: ("conduits", filters.conduit_matches),
    Kind.STREAM: ("streams", filters.stream_matches),
    Kind.FLOW: ("flows", filters.flow_matches),
    Kind.VIP: ("vips", filters.vip_matches),
    Kind.ATTRACTOR: ("attractors", filters.attractor_matches),
    Kind.GATEWAY: ("gateways", filters.gateway_matches),
}


def select(config: model.Configuration, kind: Kind, flt: Any) -> Any:
    """What a ``kind`` watcher with filter ``flt`` sees of ``config``.

    A trench (or ``None``) for :attr:`Kind.TRENCH`, a tuple of objects for the other kinds.
    """
    if kind is Kind.TRENCH:
        return config.trench if filters.trench_matches(flt, config.trench) else None
    attr, matches = _LISTS[kind]
    return tuple(x for x in getattr(config, attr) if matches(flt, x))


class ConfigurationManager:
    """Holds the configuration being served and the watchers of it (one owner: the event loop)."""

    def __init__(self, config: model.Configuration | None = None) -> None:
        self._hub: watchers.Hub[model.Configuration] = watchers.Hub(config or model.Configuration())
        self._kinds: dict[watchers.Mailbox[Any], Kind] = {}

    @property
    def config(self) -> model.Configuration:
        return self._hub.state

    @property
    def watcher_count(self) -> int:
        return len(self._hub)

    def watchers_by_kind(self) -> dict[Kind, int]:
        """Open watch streams per kind (every kind present, 0 included)."""
        counts = dict.fromkeys(Kind, 0)
        for kind in self._kinds.values():
            counts[kind] += 1
        return counts

    def update(self, config: model.Configuration) -> int:
        """Serve ``config`` from now on; returns how many watchers got a new view."""
        if config == self._hub.state:
            return 0
        return self._hub.publish(config)

    def subscribe(self, kind: Kind, flt: Any) -> watchers.Mailbox[Any]:
        box = self._hub.subscribe(lambda config: select(config, kind, flt), key=(kind, flt))
        self._kinds[box] = kind
        return box

    def unsubscribe(self, box: watchers.Mailbox[Any]) -> None:
        self._kinds.pop(box, None)
        self._hub.unsubscribe(box)

    def close(self) -> None:
        self._kinds.clear()
        self._hub.close()
