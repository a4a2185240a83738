"""What the local runtime scrapes: each component's metrics port and settings, and Prometheus's configuration.

Every component process of a pod serves ``/metrics`` on its own port inside the pod's namespace
(Meridio's ``NSM_METRICS_PORT`` 2223 for the LB and ``NFE_METRICS_PORT`` 2224 for the frontend; ours for
the rest). The runtime daemon, in the host namespace, reaches them by connecting *inside* each pod's
namespace (as ``kubectl port-forward`` does), and serves them on loopback as
``http://127.0.0.1:<port>/pods/<pod>/<component>/metrics`` next to its own ``/metrics``. A Prometheus
started beside the environment scrapes exactly those paths, listed in a ``file_sd`` targets file the
daemon rewrites whenever pods come or go (Prometheus picks the file up by itself). Pure: no I/O.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping

__all__ = ["METRICS_PORTS", "ScrapeTarget", "metrics_env", "targets", "file_sd", "prometheus_config",
           "RUNTIME_JOB", "PODS_JOB"]

METRICS_PORTS: Mapping[str, tuple[str, int]] = {
    "lb": ("NSM_", 2223), "frontend": ("NFE_", 2224), "nsp": ("NSP_", 2225), "ipam": ("IPAM_", 2226),
    "proxy": ("NSM_", 2227), "tapa": ("MERIDIO_", 2228),
}
"""component -> (its settings prefix, its metrics port)."""

RUNTIME_JOB = "meridio-runtime"
PODS_JOB = "meridio-pods"


def metrics_env(component: str) -> dict[str, str]:
    """The settings that turn a component's ``/metrics`` on (empty for a process without metrics)."""
    if component not in METRICS_PORTS:
        return {}
    prefix, port = METRICS_PORTS[component]
    return {f"{prefix}METRICS_ENABLED": "true", f"{prefix}METRICS_PORT": str(port)}


@dataclasses.dataclass(frozen=True)
class ScrapeTarget:
    pod: str
    component: str
    netns: str
    port: int
    labels: Mapping[str, str]
    """What Prometheus attaches to every sample: pod, component, node (the families carry the trench)."""

    @property
    def path(self) -> str:
        return f"/pods/{self.pod}/{self.component}/metrics"


def targets(processes: Iterable[tuple[str, str, str | None, Mapping[str, str]]]) -> list[ScrapeTarget]:
    """Scrape targets of ``(pod, component, netns, labels)`` processes that serve metrics, sorted."""
    out = []
    for pod, component, netns, labels in processes:
        if component in METRICS_PORTS and netns:
            out.append(ScrapeTarget(pod, component, netns, METRICS_PORTS[component][1],
                                    {"pod": pod, "component": component, **labels}))
    return sorted(out, key=lambda t: (t.pod, t.component))


def file_sd(scrape: Iterable[ScrapeTarget], address: str) -> str:
    """A Prometheus ``file_sd_configs`` file: one entry per target, all at ``address`` (host:port)."""
    entries = [{"targets": [address], "labels": {"__metrics_path__": t.path, **t.labels}} for t in scrape]
    return json.dumps(entries, indent=1, sort_keys=True) + "\n"


def prometheus_config(*, runtime_address: str, targets_file: str, interval_s: float, environment: str) -> str:
    """``prometheus.yml``: the runtime's own metrics and every pod's, through the runtime's endpoint."""
    interval = f"{max(1, round(interval_s))}s"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "external_labels": {"environment": environment}},
        "scrape_configs": [
            {"job_name": RUNTIME_JOB, "static_configs": [{"targets": [runtime_address]}]},
            {"job_name": PODS_JOB, "file_sd_configs": [{"files": [targets_file], "refresh_interval": "5s"}],
             "relabel_configs": [{"source_labels": ["pod", "component"], "separator": "/",
                                  "target_label": "instance"}]},
        ],
    }
    return json.dumps(config, indent=1) + "\n"  # JSON is YAML: no YAML writer needed
