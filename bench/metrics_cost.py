"""What the metrics cost: component CPU with Prometheus scraping every 5 s vs not, memory, scrape times.

One environment (a copy of the default one, every component's ``/metrics`` on, a real Prometheus beside
it scraping every 5 s through the runtime). Interleaved windows of ``--window`` seconds: *scraped*
(Prometheus running) and *idle* (Prometheus stopped with SIGSTOP, so nothing scrapes), ``--rounds`` of
each; per window the CPU time (utime + stime from ``/proc/<pid>/stat``) each component process used.
The table gives CPU per component kind in ms per second (median over rounds of the per-window sums),
the difference, and CPU per scrape of one endpoint. Then: resident memory per component kind (median
over its processes) with metrics on, next to a second environment brought up with every component's
metrics off (``components: {<c>: {<PREFIX>METRICS_ENABLED: "false"}}``) after the first one is down;
the scrape time of every endpoint as Prometheus reports it (``scrape_duration_seconds``), and what one
sequential fetch of every endpoint through the runtime takes. The data path: the LB's nftables
ruleset is compared between the two environments (metrics read counters the ruleset has anyway).

    sudo .venv/bin/python bench/metrics_cost.py [--rounds 3] [--window 20]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import signal
import statistics
import subprocess
import time
import urllib.parse
from typing import Any

import runtime_env
import yaml
from runtime_env import ROOT

from meridio.runtime.local import client, scrape
from meridio.runtime.local.layout import Naming, StateLayout, state_root

ON, OFF = ("benchm", "mbm"), ("benchn", "mbn")
_TICK = os.sysconf("SC_CLK_TCK")


def environment(name: str, prefix: str, *, metrics: bool) -> pathlib.Path:
    path = runtime_env.default_environment(name, prefix)
    data = yaml.safe_load(path.read_text())
    if metrics:
        data["monitoring"] = {"prometheus": True, "scrape-interval": "5s"}
    else:
        data["components"] = {c: {f"{prefix_}METRICS_ENABLED": "false"}
                              for c, (prefix_, _) in scrape.METRICS_PORTS.items()}
    path.write_text(yaml.safe_dump(data))
    return path


def processes(env: str) -> list[dict[str, Any]]:
    status = json.loads(runtime_env.meridio(env, "status", "-o", "json"))
    return [p for p in status["processes"] if p["pid"] and p["state"] == "running"]


def cpu_ticks(pid: int) -> int:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def window(procs: list[dict[str, Any]], seconds: float) -> dict[str, float]:
    """CPU seconds per component kind over ``seconds``."""
    before = {p["pid"]: cpu_ticks(p["pid"]) for p in procs}
    time.sleep(seconds)
    out: dict[str, float] = {}
    for p in procs:
        used = (cpu_ticks(p["pid"]) - before[p["pid"]]) / _TICK
        out[p["component"]] = out.get(p["component"], 0.0) + used
    return out


def prometheus(ports: client.MonitoringPorts, promql: str) -> list[dict[str, Any]]:
    url = f"{ports.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    return json.loads(client.http_get(url)[1])["data"]["result"]  # type: ignore[no-any-return]


def ruleset(prefix: str, pod: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", Naming(prefix).pod_ns(pod), "nft", "list", "table", "inet",
                           "meridio-lb"], capture_output=True, text=True, check=True)
    return "\n".join(line for line in done.stdout.splitlines() if "counter packets" not in line
                     and "elements" not in line)


def shape(rules: str) -> str:
    """The ruleset without what differs between any two bring-ups: target identifiers (random, from each
    TAPA), the marks derived from them and the map elements that hold them."""
    rules = re.sub(r"tgt-\d+", "tgt-N", rules)
    rules = re.sub(r"0x[0-9a-f]{8}", "0xM", rules)
    kept = [line for line in rules.splitlines() if not re.match(r"\s+\d+ : ", line)]
    counters = sorted(i for i, line in enumerate(kept) if line.strip() == "counter tgt-N {")
    return "\n".join(kept) + f"\n{len(counters)} target counters"


def measure_on(args: argparse.Namespace) -> dict[str, Any]:
    name, prefix = ON
    try:
        runtime_env.meridio(name, "up", "-f", str(environment(name, prefix, metrics=True)), "--timeout", "300")
        return _measure_on(args, name, prefix)
    finally:
        runtime_env.meridio(name, "down")  # also after a failure: no namespace or process is left


def _measure_on(args: argparse.Namespace, name: str, prefix: str) -> dict[str, Any]:
    layout = StateLayout(state_root(name))
    ports = client.monitoring_ports(layout)
    assert ports is not None and ports.prometheus
    procs = processes(name)
    prom = next(p for p in procs if p["component"] == "prometheus")
    components = [p for p in procs if p["component"] in scrape.METRICS_PORTS]
    time.sleep(15)  # a few scrapes before measuring
    rounds: list[dict[str, Any]] = []
    try:
        for r in range(args.rounds):
            for mode in (("scraped", "idle") if r % 2 == 0 else ("idle", "scraped")):
                os.kill(prom["pid"], signal.SIGCONT if mode == "scraped" else signal.SIGSTOP)
                time.sleep(1)
                rounds.append({"mode": mode, "cpu": window(components, args.window)})
    finally:
        os.kill(prom["pid"], signal.SIGCONT)
    time.sleep(12)
    durations = {(r["metric"]["pod"], r["metric"]["component"]): float(r["value"][1])
                 for r in prometheus(ports, 'scrape_duration_seconds{job="meridio-pods"}')}
    sizes = {(r["metric"]["pod"], r["metric"]["component"]): float(r["value"][1])
             for r in prometheus(ports, 'scrape_samples_scraped{job="meridio-pods"}')}
    sequential = []
    targets = [(p["pod"], p["component"]) for p in components]
    for _ in range(5):
        start = time.perf_counter()
        for pod, comp in targets:
            client.http_get(f"{ports.url}/pods/{pod}/{comp}/metrics")
        sequential.append(time.perf_counter() - start)
    rss = {p["component"]: [] for p in components}  # type: dict[str, list[int]]
    for p in components:
        rss[p["component"]].append(rss_kib(p["pid"]))
    lb_pod = next(p["pod"] for p in components if p["component"] == "lb")
    result = {"rounds": rounds, "scrape_seconds": {f"{k[0]}/{k[1]}": v for k, v in durations.items()},
              "samples": {f"{k[0]}/{k[1]}": v for k, v in sizes.items()}, "sequential_fetch_seconds": sequential,
              "rss_kib": rss, "prometheus_rss_kib": rss_kib(prom["pid"]), "endpoints": len(targets),
              "ruleset": ruleset(prefix, lb_pod), "lb_pod": lb_pod}
    return result


def measure_off() -> dict[str, Any]:
    name, prefix = OFF
    try:
        runtime_env.meridio(name, "up", "-f", str(environment(name, prefix, metrics=False)), "--timeout", "300")
        return _measure_off(name, prefix)
    finally:
        runtime_env.meridio(name, "down")


def _measure_off(name: str, prefix: str) -> dict[str, Any]:
    procs = [p for p in processes(name) if p["component"] in scrape.METRICS_PORTS]
    time.sleep(15)
    rss: dict[str, list[int]] = {}
    for p in procs:
        rss.setdefault(p["component"], []).append(rss_kib(p["pid"]))
    lb_pod = next(p["pod"] for p in procs if p["component"] == "lb")
    return {"rss_kib": rss, "ruleset": ruleset(prefix, lb_pod)}


def table(on: dict[str, Any], off: dict[str, Any], window_s: float) -> str:
    kinds = sorted(on["rss_kib"])
    lines = ["| component | CPU scraped (ms/s) | CPU idle (ms/s) | per scrape of one endpoint (ms) | RSS metrics on (MiB) "
             "| RSS metrics off (MiB) | scrape time p50 / max (ms) |", "|---|---|---|---|---|---|---|"]
    for kind in kinds:
        scraped = statistics.median(r["cpu"].get(kind, 0.0) for r in on["rounds"] if r["mode"] == "scraped")
        idle = statistics.median(r["cpu"].get(kind, 0.0) for r in on["rounds"] if r["mode"] == "idle")
        n = len(on["rss_kib"][kind])
        per_scrape = (scraped - idle) / (n * window_s / 5.0) * 1000
        times = [v * 1000 for k, v in on["scrape_seconds"].items() if k.endswith("/" + kind)]
        lines.append(f"| {kind} ({n}) | {scraped / window_s * 1000:.1f} | {idle / window_s * 1000:.1f} | "
                     f"{per_scrape:.2f} | {statistics.median(on['rss_kib'][kind]) / 1024:.1f} | "
                     f"{statistics.median(off['rss_kib'].get(kind, [0])) / 1024:.1f} | "
                     f"{statistics.median(times):.1f} / {max(times):.1f} |")
    seq = statistics.median(on["sequential_fetch_seconds"]) * 1000
    lines.append("")
    lines.append(f"Whole environment: {on['endpoints']} endpoints, one sequential fetch of all through the runtime "
                 f"{seq:.0f} ms (median of 5); Prometheus RSS {on['prometheus_rss_kib'] / 1024:.0f} MiB; "
                 f"LB ruleset with metrics on identical to metrics off (target identifiers aside): "
                 f"{shape(on['ruleset']) == shape(off['ruleset'])}.")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=20.0)
    args = parser.parse_args()
    on = measure_on(args)
    off = measure_off()
    text = table(on, off, args.window)
    print(text)
    out = ROOT / "bench" / "results" / "metrics_cost.json"
    out.write_text(json.dumps({"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                               "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs",
                               "args": vars(args), "on": on, "off": off, "table": text}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
