"""The NSP's Prometheus metrics (``NSP_METRICS_ENABLED``, ``/metrics`` on ``NSP_METRICS_PORT``, 2225).

Families, all labelled ``trench`` (the configured trench's name; empty while none is configured):

- ``meridio_nsp_watchers{kind}``: open Watch streams per kind (``trench``, ``conduit``, ``stream``,
  ``flow``, ``vip``, ``attractor``, ``gateway`` of the ConfigurationManager; ``target`` of the
  TargetRegistry);
- ``meridio_nsp_targets{type,status}``: entries in the target registry (``default``, ``frontend``,
  ``loadbalancer`` x ``enabled``, ``disabled``);
- ``meridio_nsp_configuration_resources{kind}``: objects in the configuration being served (``trench``
  is 1 or 0);
- ``meridio_nsp_configuration_loads_total{result}``: changed configuration file contents ``applied``
  or ``rejected`` (invalid or unreadable; the last good configuration stays);
- ``meridio_nsp_registry_operations_total{op}``: registry entries ``register``-ed (new), ``update``-d,
  ``refresh``-ed (unchanged keepalive), ``unregister``-ed, ``expired``.

Everything is read at scrape time from what the NSP already keeps (one owner: the event loop).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from meridio.api import model
from meridio.common import metrics
from meridio.nsp import config, source, targets

__all__ = ["NspMetrics", "families", "TARGET_WATCH_KIND"]

TARGET_WATCH_KIND = "target"

_RESOURCES = (("conduit", "conduits"), ("stream", "streams"), ("flow", "flows"), ("vip", "vips"),
              ("attractor", "attractors"), ("gateway", "gateways"))
_STATUSES = (model.TargetStatus.ENABLED, model.TargetStatus.DISABLED)


def families(*, cfg: model.Configuration, config_watchers: Mapping[config.Kind, int], target_watchers: int,
             registered: Iterable[model.Target], loads: Mapping[source.LoadResult, int],
             operations: Mapping[targets.Operation, int]) -> list[metrics.Family]:
    """Every NSP family from plain state (pure: the unit tests call it with hand-made values)."""
    trench = cfg.trench.name if cfg.trench is not None else ""
    watchers = [((trench, k.value), config_watchers.get(k, 0)) for k in config.Kind]
    watchers.append(((trench, TARGET_WATCH_KIND), target_watchers))
    by_kind: dict[tuple[model.TargetType, model.TargetStatus], int] = {
        (t, s): 0 for t in model.TargetType for s in _STATUSES}
    for target in registered:
        by_kind[(target.type, target.status)] = by_kind.get((target.type, target.status), 0) + 1
    resources = [((trench, "trench"), 1 if cfg.trench is not None else 0)]
    resources += [((trench, kind), len(getattr(cfg, attr))) for kind, attr in _RESOURCES]
    return [
        metrics.gauge("nsp_watchers", "Open Watch streams of the NSP, by resource kind", ["trench", "kind"], watchers),
        metrics.gauge("nsp_targets", "Entries in the NSP target registry", ["trench", "type", "status"],
                      [((trench, t.name.lower(), s.name.lower()), n) for (t, s), n in sorted(by_kind.items())]),
        metrics.gauge("nsp_configuration_resources", "Objects in the configuration the NSP serves",
                      ["trench", "kind"], resources),
        metrics.counter("nsp_configuration_loads", "Changed configuration file contents, applied or rejected",
                        ["trench", "result"], [((trench, r.value), loads.get(r, 0)) for r in source.LoadResult]),
        metrics.counter("nsp_registry_operations", "Target registry entries changed, by operation",
                        ["trench", "op"], [((trench, op.value), operations.get(op, 0)) for op in targets.Operation]),
    ]


class NspMetrics:
    """The NSP's registry: one collector reading the ConfigurationManager, the registry and the file source."""

    def __init__(self, manager: config.ConfigurationManager, registry_: targets.Targets,
                 files: source.FileSource | source.ConfigMapSource) -> None:
        self.metrics = metrics.Metrics()
        self._manager, self._targets, self._files = manager, registry_, files
        self.metrics.collect(self._families)

    def _families(self) -> list[metrics.Family]:
        return families(cfg=self._manager.config, config_watchers=self._manager.watchers_by_kind(),
                        target_watchers=self._targets.watcher_count, registered=self._targets.targets(),
                        loads=self._files.loads, operations=self._targets.operations)
