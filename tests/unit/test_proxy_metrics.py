"""The proxy's metric families from plain values, and the collector over a forwarder on the fake kernel."""
from __future__ import annotations

from typing import Any

from meridio.kernel.netlink import InterfaceStats
from meridio.proxy import dataplane, metrics
from tests.unit.test_proxy_forwarder import lb_target, started


def samples_of(fams: list[Any]) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {s.name: [(x.labels, x.value) for x in f.samples if x.name == s.name] for f in fams for s in f.samples}


def stats(name: str, rx: int = 0) -> InterfaceStats:
    return InterfaceStats(name, "02:00:00:00:00:01", rx, rx * 100, 0, 0, 0, 0, 0, 0)


IDS = {"trench": "trench-a", "conduit": "conduit-a-1"}


def test_state_families_carry_the_trench_and_conduit() -> None:
    got = samples_of(metrics.families(trench="trench-a", conduit="conduit-a-1", lb_peers=3, lb_links=2,
                                      target_links=5, ready=True))
    assert got == {
        "meridio_proxy_lb_peers": [(IDS, 3)], "meridio_proxy_lb_links": [(IDS, 2)],
        "meridio_proxy_target_links": [(IDS, 5)], "meridio_proxy_egress_ready": [(IDS, 1)]}


def test_only_the_bridge_and_the_link_ports_are_the_proxys_interfaces() -> None:
    picked = metrics.own_interfaces([stats("lo"), stats("pl-b"), stats("bridge0"), stats("eth0")], {"bridge0", "pl-b"})
    assert [s.name for s in picked] == ["bridge0", "pl-b"]


async def test_a_scrape_reads_the_forwarders_links_and_their_counters() -> None:
    bed = await started()
    bed.dp.ns["/run/netns/lb-1"] = {}
    await bed.fwd.set_lb_targets([lb_target("lb-1"), lb_target("lb-2")])  # lb-2 has no namespace: no link
    port = bed.fwd.lb.links["lb-1"].port
    reads: list[int] = []

    async def read() -> list[InterfaceStats]:
        reads.append(1)
        if len(reads) > 1:
            raise dataplane.KernelError("interface stats: gone")
        return [stats("bridge0", 7), stats(port, 3), stats("eth0", 99)]

    pm = metrics.ProxyMetrics(bed.fwd, trench="trench-a", conduit="conduit-a-1", bridge="bridge0", read_stats=read)
    with pm.timed("lbTargets"):
        pass
    for _ in range(2):  # the second read fails: the last counters are served again
        text = (await pm.metrics.render()).decode()
        assert 'meridio_proxy_lb_peers{conduit="conduit-a-1",trench="trench-a"} 2.0' in text
        assert 'meridio_proxy_lb_links{conduit="conduit-a-1",trench="trench-a"} 1.0' in text
        assert 'meridio_proxy_egress_ready{conduit="conduit-a-1",trench="trench-a"} 1.0' in text
        assert ('meridio_interface_receive_packets_total{conduit="conduit-a-1",interface="bridge0",'
                'mac="02:00:00:00:00:01",trench="trench-a"} 7.0') in text
        assert f'interface="{port}"' in text and 'interface="eth0"' not in text
        assert ('meridio_proxy_reconcile_duration_seconds_count{conduit="conduit-a-1",input="lbTargets",'
                'trench="trench-a"} 1.0') in text
