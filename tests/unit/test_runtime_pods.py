"""Pods from workloads (pure): NAD reading, external address candidates, component settings."""
from __future__ import annotations

import ipaddress
import pathlib

from meridio.api import resources
from meridio.runtime import reconcile as rc
from meridio.runtime.local import environment as envmod
from meridio.runtime.local import pods, topology
from meridio.runtime.local.layout import Naming, StateLayout

NAD = """
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: nad-1, namespace: red}
spec:
  config: '{"cniVersion": "0.4.0", "plugins": [{"type": "bridge", "vlan": 100, "ipam": {"type": "whereabouts",
    "ipRanges": [{"range": "169.254.100.0/24", "exclude": ["169.254.100.1/32", "169.254.100.150/32"]},
                 {"range": "2001:db8:100::/64"}]}}]}'
"""


def _nad(text: str = NAD) -> resources.NetworkAttachmentDefinition:
    [obj] = resources.loads(text)
    assert isinstance(obj, resources.NetworkAttachmentDefinition)
    return obj


def test_a_nad_gives_its_vlan_ranges_and_excludes() -> None:
    nad = pods.parse_nad(_nad())
    assert nad.vlan == 100
    assert [str(r) for r in nad.ranges] == ["169.254.100.0/24", "2001:db8:100::/64"]
    assert [str(x) for x in nad.excludes] == ["169.254.100.1/32", "169.254.100.150/32"]


def test_a_nad_with_unreadable_config_gives_nothing_rather_than_an_error() -> None:
    broken = _nad(NAD.replace("config: '{", "config: 'not json {"))
    assert pods.parse_nad(broken) == pods.Nad()


def test_host_candidates_skip_excluded_reserved_and_out_of_range_addresses() -> None:
    net = envmod.Network("seg", ipaddress.IPv4Network("169.254.100.0/24"), ipaddress.IPv6Network("2001:db8:100::/64"))
    reserved = [ipaddress.ip_address("169.254.100.2"), ipaddress.ip_address("2001:db8:100::3")]
    first = list(pods.host_candidates(net, reserved=reserved, nad=pods.parse_nad(_nad()), limit=6))
    assert first == [4, 5, 6]
    assert 150 not in pods.host_candidates(net, nad=pods.parse_nad(_nad()))


def test_host_candidates_never_reach_the_broadcast_address() -> None:
    net = envmod.Network("small", ipaddress.IPv4Network("192.0.2.0/29"), None)
    assert list(pods.host_candidates(net)) == [1, 2, 3, 4, 5, 6]


def _builder(tmp: pathlib.Path) -> pods.PodBuilder:
    env = envmod.load_default()
    return pods.PodBuilder(env, StateLayout(tmp / "state"), Naming(env.prefix), python="/py")


def test_trench_pods_listen_on_meridios_tcp_ports_and_are_reached_by_service_name(tmp_path: pathlib.Path) -> None:
    b = _builder(tmp_path)
    nsp = b.build(rc.Workload("nsp-trench-a", rc.Kind.NSP, "node-1", "trench-a"), pod_host=2)
    [proc] = nsp.processes
    assert proc.argv == ("/py", "-m", "meridio.cli.main", "run", "nsp")
    assert (proc.env["NSP_LISTEN_ADDRESS"], proc.env["NSP_PORT"]) == ("[::]", "7778")
    assert b.nsp_address("trench-a") == "nsp-service-trench-a:7778"
    assert b.nsp_forward("trench-a") == f"unix:{tmp_path}/state/trenches/trench-a/nsp.sock"
    assert proc.netns == "mdef-pod-nsp-trench-a" and nsp.sysctls == {}
    assert nsp.network is not None and nsp.network.addresses == ("10.244.1.2/24", "fd00:10:244:1::2/64")
    assert (nsp.network.ifname, nsp.network.peer_ns, nsp.network.peer_master) == ("eth0", "mdef-node-node-1", "cni0")
    assert [str(g) for g in nsp.gateways] == ["10.244.1.1/24", "fd00:10:244:1::1/64"]
    ipam = b.build(rc.Workload("ipam-trench-a", rc.Kind.IPAM, "node-1", "trench-a", params=(("ip-family", "ipv6"),)))
    assert (ipam.processes[0].env["IPAM_LISTEN_ADDRESS"], ipam.processes[0].env["IPAM_PORT"]) == ("[::]", "7777")
    assert ipam.processes[0].env["IPAM_NSP_SERVICE"] == b.nsp_address("trench-a")
    assert ipam.processes[0].env["IPAM_IP_FAMILY"] == "ipv6"
    assert ipam.network is None  # no leased host index: no eth0


def test_every_component_reaches_nsp_and_ipam_at_their_service_addresses(tmp_path: pathlib.Path) -> None:
    b = _builder(tmp_path)
    objs = resources.loads((pathlib.Path(envmod.EXAMPLES_E2E) / "init-trench-a.yaml").read_text())
    by_name = rc.desired(objs, nodes=("node-1", "node-2")).by_name()
    procs = {p.component: p for name in ("stateless-lb-frontend-attractor-a-1-0", "proxy-conduit-a-1-node-2")
             for p in b.build(by_name[name]).processes}
    nsp_vars = [procs["lb"].env["NSM_NSP_SERVICE"], procs["frontend"].env["NFE_NSP_SERVICE"],
                procs["proxy"].env["NSM_NSP_SERVICE"]]
    assert nsp_vars == ["nsp-service-trench-a:7778"] * 3
    assert procs["proxy"].env["NSM_IPAM_SERVICE"] == "ipam-service-trench-a:7777"


def test_a_fe_lb_pod_runs_an_lb_and_a_frontend_sharing_the_availability_socket(tmp_path: pathlib.Path) -> None:
    b = _builder(tmp_path)
    w = rc.desired(resources.loads((pathlib.Path(envmod.EXAMPLES_E2E) / "init-trench-a.yaml").read_text()),
                   nodes=("node-1", "node-2")).by_name()["stateless-lb-frontend-attractor-a-1-1"]
    link = topology.LinkSpec("ns", "ext-vlan0", "seg", "port", ("169.254.100.2/24",))
    pod = b.build(w, external=link)
    lb, fe = pod.processes
    assert (lb.component, fe.component) == ("lb", "frontend")
    assert lb.env["NSM_SOCKET"] == fe.env["NFE_LB_SOCKET"] == f"unix:{tmp_path}/state/pods/{w.name}/lb.sock"
    assert fe.env["NFE_EXTERNAL_INTERFACE"] == "ext-vlan0" and fe.env["NFE_HOSTNAME"] == w.name
    assert lb.env["NSM_CONDUIT_NAME"] == "conduit-a-1" and fe.env["NFE_ATTRACTOR_NAME"] == "attractor-a-1"
    assert pod.external == link and pod.sysctls["net.ipv4.ip_forward"] == "1"


def test_a_target_pod_runs_the_example_target_named_after_the_pod_and_a_tapa(tmp_path: pathlib.Path) -> None:
    b = _builder(tmp_path)
    w = rc.Workload("target-a-2", rc.Kind.TARGET, "node-1", namespace="red", params=(("deployment", "target-a"),))
    app, tapa = b.build(w).processes
    assert app.argv[-6:] == ("--name", "target-a-2", "--tcp-ports", "4000,4001,4002", "--udp-ports", "4003,4004")
    assert tapa.env["MERIDIO_NAME"] == "target-a-2" and tapa.env["MERIDIO_NODE"] == "node-1"
    assert tapa.env["MERIDIO_NAMESPACE"] == "red"
    assert tapa.env["MERIDIO_NSP_SERVICE"].format(trench="trench-b") == b.nsp_address("trench-b")
    assert tapa.env["MERIDIO_PROXY_SOCKET"].format(trench="t", conduit="c", node="n") == \
        str(b.layout.proxy_dir("t", "c", "n") / "link.sock")


def test_component_overrides_from_the_environment_reach_the_process(tmp_path: pathlib.Path) -> None:
    env = envmod.parse({"name": "lab", "components": {"proxy": {"NSM_IP_RELEASE_DELAY": "1s"}}})
    b = pods.PodBuilder(env, StateLayout(tmp_path), Naming("lab"))
    w = rc.Workload("proxy-c-n", rc.Kind.PROXY, "n", "t", params=(("conduit", "c"),))
    [proc] = b.build(w).processes
    assert proc.env["NSM_IP_RELEASE_DELAY"] == "1s" and proc.env["NSM_HOST"] == "n"


def test_a_proxy_links_a_pod_only_from_the_namespace_the_runtime_made_for_it(tmp_path: pathlib.Path) -> None:
    b = _builder(tmp_path)
    w = rc.Workload("proxy-c-n", rc.Kind.PROXY, "n", "t", params=(("conduit", "c"),))
    [proc] = b.build(w).processes
    target = b.build(rc.Workload("target-a-2", rc.Kind.TARGET, "n", params=(("deployment", "target-a"),)))
    assert proc.env["NSM_POD_NETNS"].format(pod="target-a-2") == f"/run/netns/{target.netns}"


def test_each_grpc_component_gets_its_own_certificate_naming_its_pod_node_and_trench(tmp_path: pathlib.Path) -> None:
    b = _builder(tmp_path)
    w = rc.Workload("target-a-2", rc.Kind.TARGET, "node-1", namespace="red", params=(("deployment", "target-a"),))
    pod = b.build(w)
    app, tapa = pod.processes
    assert "MERIDIO_TLS_DIR" not in app.env  # the example target talks no gRPC to components
    assert tapa.env["MERIDIO_TLS_INSECURE"] == "false"
    [cert] = pod.certificates
    assert tapa.env["MERIDIO_TLS_DIR"] == str(cert.directory) == f"{tmp_path}/state/pods/target-a-2/tls/tapa"
    assert cert.identity.uri == "spiffe://meridio.local/default/node/node-1/tapa/target-a-2"
    nsp = b.build(rc.Workload("nsp-trench-a", rc.Kind.NSP, "node-1", "trench-a"))
    assert nsp.certificates[0].identity.uri == "spiffe://meridio.local/default/trench/trench-a/nsp/nsp-trench-a"


def test_without_tls_no_certificate_is_issued_and_every_grpc_component_is_told_so(tmp_path: pathlib.Path) -> None:
    env = envmod.load_default()
    b = pods.PodBuilder(env, StateLayout(tmp_path / "state"), Naming(env.prefix), python="/py", tls=False)
    pod = b.build(rc.Workload("target-a-2", rc.Kind.TARGET, "node-1", namespace="red",
                              params=(("deployment", "target-a"),)))
    assert pod.certificates == () and b.runtime_tls is None
    assert pod.processes[1].env["MERIDIO_TLS_INSECURE"] == "true"


def test_the_lb_and_the_proxy_learn_their_pod_addresses_for_cross_node_tunnels(tmp_path: pathlib.Path) -> None:
    b = _builder(tmp_path)
    objs = resources.loads((pathlib.Path(envmod.EXAMPLES_E2E) / "init-trench-a.yaml").read_text())
    by_name = rc.desired(objs, nodes=("node-1", "node-2")).by_name()
    fe = b.build(by_name["stateless-lb-frontend-attractor-a-1-1"], pod_host=4)
    lb = next(p for p in fe.processes if p.component == "lb")
    assert (lb.env["NSM_HOST"], lb.env["NSM_POD_IP"]) == ("node-2", "10.244.2.4,fd00:10:244:2::4")
    assert "NSM_POD_IP" not in next(p for p in fe.processes if p.component == "frontend").env
    [proxy] = b.build(by_name["proxy-conduit-a-1-node-1"], pod_host=3).processes
    assert proxy.env["NSM_POD_IP"] == "10.244.1.3,fd00:10:244:1::3" and proxy.env["NSM_HOST"] == "node-1"
    assert proxy.env["NSM_MTU"] == "1500"  # the conduit MTU: LB ends, bridge, target links follow it
    assert fe.network is not None and fe.network.mtu == 9000
