"""The local environment: what ``meridio up`` builds around the Meridio resources.

An environment is the part a real user would own outside Meridio: the nodes, the external L2
segments the attractors attach to (Meridio's e2e: VLANs on a bridge), the gateway routers running BIRD
on those segments with a traffic generator behind each, and the target application deployments. It is
YAML, parsed here once into frozen dataclasses; every error names the field path and the rule::

    name: default                # environment name; state in /var/lib/meridio/<name>/
    prefix: mdef                 # namespace/link name prefix (lowercase, <= 6 chars)
    nodes: [node-1, node-2]
    networks:                    # external segments, matched to attractors by NAD name or VLAN id
      - {name: vlan-100, vlan: 100, attachments: [trench-a-attr-a-1-nad],
         ipv4: 169.254.100.0/24, ipv6: "2001:db8:100::/64"}
    routers:                     # one segment each, a traffic generator behind each
      - name: gw-a1
        trench: trench-a         # the trench whose traffic it carries
        asn: 4248829953
        network: vlan-100
        ipv4: 169.254.100.150
        ipv6: "2001:db8:100::150"
        bgp: {peer-asn: 8103, port: 10179, hold-time: 24s, bfd: {min-rx: 300ms, min-tx: 300ms, multiplier: 5}}
        traffic-generator: {ipv4: 192.0.2.0/24, ipv6: "2001:db8:ff::/64"}
    deployments:
      - {name: target-a, replicas: 4, streams: [{trench: trench-a, conduit: conduit-a-1, stream: stream-a-i}]}
    resources: ["@e2e/init-trench-a.yaml"]   # applied at up; "@e2e/" = the project's examples/e2e/
    monitoring: {port: 0, prometheus: false, prometheus-port: 0, scrape-interval: 5s}
                             # the runtime's HTTP endpoint on 127.0.0.1 (0 = a free port): its /metrics and
                             # every pod's through it; Debian's prometheus beside the environment (off)
    cluster:                 # the cluster network (defaults shown): node n gets address n on the underlay
      pod-network: {ipv4: 10.244.0.0/16, ipv6: "fd00:10:244::/48"}   # and 10.244.n.0/24 + fd00:10:244:n::/64
      underlay: {ipv4: 198.18.0.0/24, ipv6: "fd00:198:18::/64"}
      mtu: 9000              # of the pod network and underlay (a VXLAN conduit keeps 1500 inside)
      conduit-mtu: 1500      # every conduit interface (CONDUIT_MTU); default min(1500, mtu - 50)

Pure: no I/O except :func:`load` reading the file. YAML is read with :mod:`meridio.api.yamlio` (strict:
duplicate keys are errors), as the resource files are.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import pathlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from meridio.api import yamlio
from meridio.api.problems import ProblemsError
from meridio.common.durations import DurationError, parse_duration
from meridio.runtime import reconcile as rc

__all__ = [
    "DEFAULT_PATH",
    "EXAMPLES_E2E",
    "Bfd",
    "Bgp",
    "Cluster",
    "Deployment",
    "Environment",
    "EnvironmentSpecError",
    "Monitoring",
    "Network",
    "Router",
    "Static",
    "StreamRef",
    "TrafficGenerator",
    "load",
    "load_default",
    "loads",
    "parse",
]

DEFAULT_PATH = pathlib.Path(__file__).with_name("default.yaml")
EXAMPLES_E2E = pathlib.Path(__file__).resolve().parents[4] / "examples" / "e2e"
_E2E_TAG = "@e2e/"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,5}$")
T = TypeVar("T")


class EnvironmentSpecError(ValueError):
    """The environment description is invalid; the message names the field and the rule."""


@dataclasses.dataclass(frozen=True)
class Network:
    """An external L2 segment (a bridge in its own namespace)."""

    name: str
    ipv4: ipaddress.IPv4Network | None
    ipv6: ipaddress.IPv6Network | None
    vlan: int | None = None
    attachments: tuple[str, ...] = ()
    """NetworkAttachmentDefinition names (``name`` or ``namespace/name``) this segment serves."""


@dataclasses.dataclass(frozen=True)
class Bfd:
    min_rx_ms: int = 300
    min_tx_ms: int = 300
    multiplier: int = 5


@dataclasses.dataclass(frozen=True)
class Bgp:
    """The router side of the BGP sessions with the frontends (dynamic neighbours on each segment)."""

    peer_asn: int = 8103
    port: int = 10179
    """TCP port the router listens on and connects to (Meridio's e2e uses 10179 on both sides)."""
    hold_time_s: int = 24
    bfd: Bfd | None = None
    password: str | None = None


@dataclasses.dataclass(frozen=True)
class Static:
    """Static routes to ``vips`` via every frontend on the router's segments, supervised by BFD."""

    vips: tuple[str, ...] = ()
    bfd: Bfd | None = None


@dataclasses.dataclass(frozen=True)
class TrafficGenerator:
    """The client network behind a router: the router takes the first host, the generator the second."""

    ipv4: ipaddress.IPv4Network | None = None
    ipv6: ipaddress.IPv6Network | None = None

    def router_address(self, family: int) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | None:
        return self._host(family, 1)

    def generator_address(self, family: int) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | None:
        return self._host(family, 2)

    def _host(self, family: int, index: int) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | None:
        net = self.ipv4 if family == 4 else self.ipv6
        if net is None:
            return None
        return ipaddress.ip_interface(f"{net.network_address + index}/{net.prefixlen}")


@dataclasses.dataclass(frozen=True)
class Router:
    """A gateway router (BIRD) on one external segment, with a traffic generator behind it."""

    name: str
    trench: str
    network: str
    asn: int = 4248829953
    ipv4: ipaddress.IPv4Address | None = None
    ipv6: ipaddress.IPv6Address | None = None
    bgp: Bgp | None = None
    static: Static | None = None
    traffic_generator: TrafficGenerator | None = None


@dataclasses.dataclass(frozen=True)
class StreamRef:
    trench: str
    conduit: str
    stream: str


@dataclasses.dataclass(frozen=True)
class Deployment:
    """Target pods ``<name>-<index>``: the example target plus a TAPA that opens ``streams`` at start."""

    name: str
    replicas: int = 1
    streams: tuple[StreamRef, ...] = ()
    namespace: str = "default"
    """Kubernetes namespace of the pods (the TAPA's ``{namespace}``)."""
    tcp_ports: tuple[int, ...] = (4000, 4001, 4002)
    udp_ports: tuple[int, ...] = (4003, 4004)


@dataclasses.dataclass(frozen=True)
class Monitoring:
    """Where the runtime serves metrics (loopback only) and whether a Prometheus runs beside it."""

    port: int = 0
    """The runtime daemon's HTTP port on 127.0.0.1 (0: any free port, recorded in the state directory)."""
    prometheus: bool = False
    prometheus_port: int = 0
    scrape_interval_s: float = 5.0


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The cluster network (a simple CNI in host-gw mode): node ``n`` (1-based, in ``nodes`` order) has
    address ``n`` on the underlay segment and the ``n``-th /24 and /64 of the pod network as its pod subnet.

    The defaults collide with nothing the project uses: IPAM's 172.16.0.0/16 and fd00::/48 (the conduit
    subnets are carved from those), the external segments (169.254.x.0/24, 2001:db8::/32) and the
    documentation ranges of traffic generators and VIPs. 198.18.0.0/15 is RFC 2544's benchmarking range.
    """

    pod_ipv4: ipaddress.IPv4Network = dataclasses.field(default_factory=lambda: ipaddress.IPv4Network("10.244.0.0/16"))
    pod_ipv6: ipaddress.IPv6Network = dataclasses.field(
        default_factory=lambda: ipaddress.IPv6Network("fd00:10:244::/48"))
    underlay_ipv4: ipaddress.IPv4Network = dataclasses.field(
        default_factory=lambda: ipaddress.IPv4Network("198.18.0.0/24"))
    underlay_ipv6: ipaddress.IPv6Network = dataclasses.field(
        default_factory=lambda: ipaddress.IPv6Network("fd00:198:18::/64"))
    mtu: int = 9000
    """MTU of the pod network and the underlay, in bytes. Jumbo frames, as many data-centre fabrics carry:
    a VXLAN conduit (50 bytes of headers over IPv4, 70 over IPv6) then keeps its 1500-byte inner MTU."""
    conduit_mtu: int | None = None
    """MTU of every conduit interface (LB ends, proxy bridge and ports, target links), Meridio's
    ``CONDUIT_MTU`` / the proxy's ``NSM_MTU``; ``None``: 1500, or less when a VXLAN conduit over the
    underlay could not carry it (:attr:`effective_conduit_mtu`)."""

    @property
    def effective_conduit_mtu(self) -> int:
        """The conduit MTU in force: the setting, else ``min(1500, mtu - 50)`` (tunnels run over IPv4 when
        both ends have it, as they do on this dual-stack pod network)."""
        return self.conduit_mtu if self.conduit_mtu is not None else min(1500, self.mtu - VXLAN_OVERHEAD[4])


VXLAN_OVERHEAD = {4: 50, 6: 70}
"""Bytes VXLAN adds per packet: outer IP (20/40) + UDP 8 + VXLAN 8 + the inner Ethernet header 14."""


@dataclasses.dataclass(frozen=True)
class Environment:
    name: str
    prefix: str
    nodes: tuple[str, ...]
    networks: tuple[Network, ...] = ()
    routers: tuple[Router, ...] = ()
    deployments: tuple[Deployment, ...] = ()
    resources: tuple[pathlib.Path, ...] = ()
    ipam_ipv4: ipaddress.IPv4Network = dataclasses.field(default_factory=lambda: ipaddress.IPv4Network("172.16.0.0/16"))
    ipam_ipv6: ipaddress.IPv6Network = dataclasses.field(default_factory=lambda: ipaddress.IPv6Network("fd00::/48"))
    components: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    """Extra environment variables per component (``nsp``, ``ipam``, ``lb``, ``frontend``, ``proxy``, ``tapa``)."""
    monitoring: Monitoring = dataclasses.field(default_factory=Monitoring)
    cluster: Cluster = dataclasses.field(default_factory=Cluster)

    def network(self, name: str) -> Network | None:
        return next((n for n in self.networks if n.name == name), None)

    def network_for(self, *, attachment: str | None = None, vlan: int | None = None) -> Network | None:
        """The segment serving a NAD (``name`` or ``namespace/name``) or, failing that, a VLAN id."""
        for net in self.networks:
            if attachment is not None and _attachment_matches(net.attachments, attachment):
                return net
        if vlan is not None:
            return next((n for n in self.networks if n.vlan == vlan), None)
        return None

    def routers_on(self, network: str) -> list[Router]:
        return [r for r in self.routers if r.network == network]

    def router(self, name: str) -> Router | None:
        return next((r for r in self.routers if r.name == name), None)

    def trench_routers(self, trench: str) -> list[Router]:
        """The routers (with a traffic generator) that carry a trench's traffic."""
        return [r for r in self.routers if r.trench == trench and r.traffic_generator]

    def deployment(self, name: str) -> Deployment | None:
        return next((d for d in self.deployments if d.name == name), None)


def _attachment_matches(served: Sequence[str], wanted: str) -> bool:
    wanted_name = wanted.split("/")[-1]
    for item in served:
        if item == wanted or ("/" not in item and item == wanted_name):
            return True
    return False


# ----------------------------------------------------------------------------------------- parsing


class _Reader:
    """Typed access to one mapping of the YAML, with the field path for error messages.

    Keys starting with ``x-`` are ignored at the top level (a place for YAML anchors, as compose files do).
    """

    def __init__(self, data: Any, path: str, allowed: Sequence[str]) -> None:
        if not isinstance(data, Mapping):
            raise EnvironmentSpecError(f"{path or 'environment'}: must be a mapping, not {_kind(data)}")
        keys = {str(k) for k in data if path or not str(k).startswith("x-")}
        unknown = sorted(keys - set(allowed))
        if unknown:
            raise EnvironmentSpecError(f"{_join(path, unknown[0])}: unknown field (allowed: {', '.join(allowed)})")
        self.data, self.path = data, path

    def at(self, key: str) -> str:
        return _join(self.path, key)

    def get(self, key: str, conv: Callable[[Any, str], T], default: T) -> T:
        raw = self.data.get(key)
        return default if raw is None else conv(raw, self.at(key))

    def need(self, key: str, conv: Callable[[Any, str], T]) -> T:
        if self.data.get(key) is None:
            raise EnvironmentSpecError(f"{self.at(key)}: required field is missing")
        return conv(self.data[key], self.at(key))

    def items(self, key: str, conv: Callable[[Any, str], T]) -> tuple[T, ...]:
        raw = self.data.get(key)
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise EnvironmentSpecError(f"{self.at(key)}: must be a list, not {_kind(raw)}")
        return tuple(conv(item, f"{self.at(key)}[{i}]") for i, item in enumerate(raw))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", int: "an integer", bool: "a boolean"}.get(
        type(value), type(value).__name__)


def _name(raw: Any, path: str) -> str:
    if not isinstance(raw, str) or not _NAME.match(raw):
        raise EnvironmentSpecError(f"{path}: {raw!r} is not a valid name (lowercase letters, digits and '-')")
    return raw


def _int(lo: int, hi: int) -> Callable[[Any, str], int]:
    def conv(raw: Any, path: str) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
            raise EnvironmentSpecError(f"{path}: {raw!r} must be an integer between {lo} and {hi}")
        return raw
    return conv


def _network(version: int) -> Callable[[Any, str], Any]:
    def conv(raw: Any, path: str) -> Any:
        try:
            net = ipaddress.ip_network(str(raw), strict=True)
        except ValueError as exc:
            raise EnvironmentSpecError(f"{path}: {raw!r} is not a valid IPv{version} prefix ({exc})") from None
        if net.version != version:
            raise EnvironmentSpecError(f"{path}: {raw!r} is not an IPv{version} prefix")
        return net
    return conv


def _address(version: int) -> Callable[[Any, str], Any]:
    def conv(raw: Any, path: str) -> Any:
        try:
            addr = ipaddress.ip_address(str(raw))
        except ValueError:
            raise EnvironmentSpecError(f"{path}: {raw!r} is not a valid IPv{version} address") from None
        if addr.version != version:
            raise EnvironmentSpecError(f"{path}: {raw!r} is not an IPv{version} address")
        return addr
    return conv


def _duration_ms(raw: Any, path: str) -> int:
    try:
        return round(parse_duration(str(raw)) * 1000)
    except DurationError:
        raise EnvironmentSpecError(f"{path}: {raw!r} is not a duration (e.g. 300ms, 24s)") from None


def _str(raw: Any, path: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise EnvironmentSpecError(f"{path}: must be a non-empty string")
    return raw


def _bfd(raw: Any, path: str) -> Bfd:
    r = _Reader(raw, path, ("min-rx", "min-tx", "multiplier"))
    return Bfd(min_rx_ms=r.get("min-rx", _duration_ms, 300), min_tx_ms=r.get("min-tx", _duration_ms, 300),
               multiplier=r.get("multiplier", _int(1, 255), 5))


def _bgp(raw: Any, path: str) -> Bgp:
    r = _Reader(raw, path, ("peer-asn", "port", "hold-time", "bfd", "password"))
    hold_ms = r.get("hold-time", _duration_ms, 24_000)
    if hold_ms < 3000:
        raise EnvironmentSpecError(f"{r.at('hold-time')}: must be at least 3s")
    return Bgp(peer_asn=r.get("peer-asn", _int(1, 2**32 - 1), 8103), port=r.get("port", _int(1, 65535), 10179),
               hold_time_s=hold_ms // 1000, bfd=r.get("bfd", _bfd, None), password=r.get("password", _str, None))


def _static(raw: Any, path: str) -> Static:
    r = _Reader(raw, path, ("vips", "bfd"))
    vips = r.items("vips", lambda v, p: str(_any_network(v, p)))
    return Static(vips=vips, bfd=r.get("bfd", _bfd, None))


def _any_network(raw: Any, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(str(raw), strict=True)
    except ValueError as exc:
        raise EnvironmentSpecError(f"{path}: {raw!r} is not a valid prefix ({exc})") from None


def _network_spec(raw: Any, path: str) -> Network:
    r = _Reader(raw, path, ("name", "vlan", "attachments", "ipv4", "ipv6"))
    net = Network(name=r.need("name", _name), vlan=r.get("vlan", _int(1, 4094), None),
                  attachments=r.items("attachments", _str),
                  ipv4=r.get("ipv4", _network(4), None), ipv6=r.get("ipv6", _network(6), None))
    if net.ipv4 is None and net.ipv6 is None:
        raise EnvironmentSpecError(f"{path}: a network needs an ipv4 or an ipv6 subnet (or both)")
    return net


def _traffic_generator(raw: Any, path: str) -> TrafficGenerator:
    r = _Reader(raw, path, ("ipv4", "ipv6"))
    return TrafficGenerator(ipv4=r.get("ipv4", _network(4), None), ipv6=r.get("ipv6", _network(6), None))


def _router(raw: Any, path: str) -> Router:
    r = _Reader(raw, path, ("name", "trench", "network", "asn", "ipv4", "ipv6", "bgp", "static",
                            "traffic-generator"))
    router = Router(name=r.need("name", _name), trench=r.need("trench", _name), network=r.need("network", _name),
                    asn=r.get("asn", _int(1, 2**32 - 1), 4248829953),
                    ipv4=r.get("ipv4", _address(4), None), ipv6=r.get("ipv6", _address(6), None),
                    bgp=r.get("bgp", _bgp, None), static=r.get("static", _static, None),
                    traffic_generator=r.get("traffic-generator", _traffic_generator, None))
    if (router.bgp is None) == (router.static is None):
        raise EnvironmentSpecError(f"{path}: exactly one of bgp and static must be given")
    if router.ipv4 is None and router.ipv6 is None:
        raise EnvironmentSpecError(f"{path}: a router needs an ipv4 or an ipv6 address (or both)")
    return router


def _stream_ref(raw: Any, path: str) -> StreamRef:
    r = _Reader(raw, path, ("trench", "conduit", "stream"))
    return StreamRef(trench=r.need("trench", _name), conduit=r.need("conduit", _name),
                     stream=r.need("stream", _name))


def _deployment(raw: Any, path: str) -> Deployment:
    r = _Reader(raw, path, ("name", "namespace", "replicas", "streams", "tcp-ports", "udp-ports"))
    port = _int(1, 65535)
    replicas = _int(0, rc.MERIDIO_MAX_TARGETS)  # `meridio scale` holds it to the streams' max-targets
    return Deployment(name=r.need("name", _name), replicas=r.get("replicas", replicas, 1),
                      streams=r.items("streams", _stream_ref), namespace=r.get("namespace", _name, "default"),
                      tcp_ports=r.items("tcp-ports", port) if "tcp-ports" in r.data else (4000, 4001, 4002),
                      udp_ports=r.items("udp-ports", port) if "udp-ports" in r.data else (4003, 4004))


def _components(raw: Any, path: str) -> dict[str, dict[str, str]]:
    known = ("nsp", "ipam", "lb", "frontend", "proxy", "tapa", "target")
    r = _Reader(raw, path, known)
    out: dict[str, dict[str, str]] = {}
    for comp in known:
        values = r.data.get(comp)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise EnvironmentSpecError(f"{r.at(comp)}: must be a mapping of environment variables")
        out[comp] = {str(k): str(v) for k, v in values.items()}
    return out


def _monitoring(raw: Any, path: str) -> Monitoring:
    r = _Reader(raw, path, ("port", "prometheus", "prometheus-port", "scrape-interval"))
    interval = r.get("scrape-interval", _duration_ms, 5000)
    if not 1000 <= interval <= 300_000:
        raise EnvironmentSpecError(f"{r.at('scrape-interval')}: must be between 1s and 5m")
    return Monitoring(port=r.get("port", _int(0, 65535), 0), prometheus=r.get("prometheus", _bool, False),
                      prometheus_port=r.get("prometheus-port", _int(0, 65535), 0), scrape_interval_s=interval / 1000)


def _bool(raw: Any, path: str) -> bool:
    if not isinstance(raw, bool):
        raise EnvironmentSpecError(f"{path}: {raw!r} must be true or false")
    return raw


def _cluster(raw: Any, path: str) -> Cluster:
    r = _Reader(raw, path, ("pod-network", "underlay", "mtu", "conduit-mtu"))
    pods = _Reader(r.data.get("pod-network") or {}, r.at("pod-network"), ("ipv4", "ipv6"))
    under = _Reader(r.data.get("underlay") or {}, r.at("underlay"), ("ipv4", "ipv6"))
    d = Cluster()
    cluster = Cluster(pod_ipv4=pods.get("ipv4", _network(4), d.pod_ipv4),
                      pod_ipv6=pods.get("ipv6", _network(6), d.pod_ipv6),
                      underlay_ipv4=under.get("ipv4", _network(4), d.underlay_ipv4),
                      underlay_ipv6=under.get("ipv6", _network(6), d.underlay_ipv6),
                      mtu=r.get("mtu", _int(1280, 65535), d.mtu), conduit_mtu=r.get("conduit-mtu", _int(1280, 65535), None))
    if cluster.effective_conduit_mtu > cluster.mtu - VXLAN_OVERHEAD[4]:
        raise EnvironmentSpecError(f"{r.at('conduit-mtu')}: {cluster.effective_conduit_mtu} does not fit a VXLAN conduit "
                                   f"over the pod network (at most mtu - {VXLAN_OVERHEAD[4]} = "
                                   f"{cluster.mtu - VXLAN_OVERHEAD[4]})")
    if cluster.effective_conduit_mtu < 1280:
        raise EnvironmentSpecError(f"{r.at('mtu')}: {cluster.mtu} leaves a conduit MTU below IPv6's 1280 "
                                   f"(mtu must be at least {1280 + VXLAN_OVERHEAD[4]})")
    for reader, key, net, most in ((pods, "ipv4", cluster.pod_ipv4, 23), (pods, "ipv6", cluster.pod_ipv6, 63),
                                   (under, "ipv4", cluster.underlay_ipv4, 30), (under, "ipv6", cluster.underlay_ipv6, 126)):
        if net.prefixlen > most:
            raise EnvironmentSpecError(
                f"{reader.at(key)}: {net} is too small (the prefix length must be at most {most})")
    return cluster


def parse(data: Any, *, base_dir: pathlib.Path | None = None) -> Environment:
    """Parse an environment mapping; relative resource paths resolve against ``base_dir``."""
    r = _Reader(data, "", ("name", "prefix", "nodes", "ipam", "networks", "routers", "deployments",
                           "resources", "components", "monitoring", "cluster"))
    name = r.need("name", _name)
    ipam = _Reader(r.data.get("ipam") or {}, "ipam", ("ipv4", "ipv6"))
    env = Environment(
        name=name, prefix=r.get("prefix", _prefix, "") or _default_prefix(name),
        nodes=r.items("nodes", _name) or ("node-1",),
        networks=r.items("networks", _network_spec), routers=r.items("routers", _router),
        deployments=r.items("deployments", _deployment),
        resources=r.items("resources", lambda v, p: _resource_path(_str(v, p), base_dir)),
        ipam_ipv4=ipam.get("ipv4", _network(4), ipaddress.IPv4Network("172.16.0.0/16")),
        ipam_ipv6=ipam.get("ipv6", _network(6), ipaddress.IPv6Network("fd00::/48")),
        components=r.get("components", _components, {}),
        monitoring=r.get("monitoring", _monitoring, Monitoring()),
        cluster=r.get("cluster", _cluster, Cluster()))
    _check_consistency(env)
    return env


def _prefix(raw: Any, path: str) -> str:
    if not isinstance(raw, str) or not _PREFIX.match(raw):
        raise EnvironmentSpecError(f"{path}: {raw!r} must be 1-6 lowercase letters or digits, starting with a letter")
    return raw


def _default_prefix(name: str) -> str:
    compact = re.sub(r"[^a-z0-9]", "", name)
    if _PREFIX.match(compact):
        return compact
    raise EnvironmentSpecError(f"prefix: required when the name {name!r} is not 1-6 letters/digits")


def _resource_path(text: str, base_dir: pathlib.Path | None) -> pathlib.Path:
    if text.startswith(_E2E_TAG):
        return EXAMPLES_E2E / text[len(_E2E_TAG):]
    path = pathlib.Path(text)
    return path if path.is_absolute() or base_dir is None else base_dir / path


def _unique(names: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise EnvironmentSpecError(f"{what}: duplicate name {n!r}")
        seen.add(n)


def _check_consistency(env: Environment) -> None:
    _unique(env.nodes, "nodes")
    _unique([n.name for n in env.networks], "networks")
    _unique([r.name for r in env.routers], "routers")
    _unique([d.name for d in env.deployments], "deployments")
    for i, router in enumerate(env.routers):
        _check_router_addresses(env, router, f"routers[{i}]")
    _check_cluster(env)


def _check_cluster(env: Environment) -> None:
    """The node count fits the pod network and the underlay; neither overlaps anything else of ``env``."""
    c = env.cluster
    nodes = len(env.nodes)
    for field, net, per_node in (("cluster.pod-network.ipv4", c.pod_ipv4, 24),
                                 ("cluster.pod-network.ipv6", c.pod_ipv6, 64)):
        if nodes > 2 ** (per_node - net.prefixlen) - 1:
            raise EnvironmentSpecError(f"{field}: {net} holds {2 ** (per_node - net.prefixlen) - 1} node subnets "
                                       f"(/{per_node}), not {nodes}")
    for field, net in (("cluster.underlay.ipv4", c.underlay_ipv4), ("cluster.underlay.ipv6", c.underlay_ipv6)):
        if nodes > min(net.num_addresses - 2, 65535):
            raise EnvironmentSpecError(f"{field}: {net} has no address for each of the {nodes} nodes")
    others: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = [
        ("ipam.ipv4", env.ipam_ipv4), ("ipam.ipv6", env.ipam_ipv6)]
    for segment in env.networks:
        others += [(f"networks[{segment.name}]", n) for n in (segment.ipv4, segment.ipv6) if n is not None]
    for router in env.routers:
        tg = router.traffic_generator
        if tg is not None:
            others += [(f"routers[{router.name}].traffic-generator", n) for n in (tg.ipv4, tg.ipv6) if n is not None]
    mine: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = [
        ("cluster.pod-network.ipv4", c.pod_ipv4), ("cluster.pod-network.ipv6", c.pod_ipv6),
        ("cluster.underlay.ipv4", c.underlay_ipv4), ("cluster.underlay.ipv6", c.underlay_ipv6)]
    for i, (field, net) in enumerate(mine):
        for other_field, other in [*mine[i + 1:], *others]:
            if _overlap(net, other):
                raise EnvironmentSpecError(f"{field}: {net} overlaps {other_field} ({other})")


def _overlap(a: ipaddress.IPv4Network | ipaddress.IPv6Network, b: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    if isinstance(a, ipaddress.IPv4Network) and isinstance(b, ipaddress.IPv4Network):
        return a.overlaps(b)
    if isinstance(a, ipaddress.IPv6Network) and isinstance(b, ipaddress.IPv6Network):
        return a.overlaps(b)
    return False


def _check_router_addresses(env: Environment, router: Router, path: str) -> None:
    net = env.network(router.network)
    if net is None:
        raise EnvironmentSpecError(f"{path}.network: no network named {router.network!r}")
    for addr, subnet, fam in ((router.ipv4, net.ipv4, "ipv4"), (router.ipv6, net.ipv6, "ipv6")):
        if addr is None:
            continue
        if subnet is None or addr not in subnet:
            raise EnvironmentSpecError(f"{path}.{fam}: {addr} is not in network {net.name}'s {fam} subnet {subnet}")


def loads(text: str, source: str, *, base_dir: pathlib.Path | None = None) -> Environment:
    """Parse an environment from YAML text (the project's strict YAML reader: duplicate keys are errors);
    errors name ``source``."""
    try:
        data = yamlio.load_one(text, source)
    except ProblemsError as exc:
        raise EnvironmentSpecError("; ".join(f"{p.field}: {p.message}" for p in exc.problems)) from None
    try:
        return parse(data, base_dir=base_dir)
    except EnvironmentSpecError as exc:
        raise EnvironmentSpecError(f"{source}: {exc}") from None


def load(path: str | pathlib.Path) -> Environment:
    """Read and parse an environment file; errors name the file."""
    p = pathlib.Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise EnvironmentSpecError(f"{p}: cannot read the environment file ({exc.strerror})") from None
    return loads(text, str(p), base_dir=p.resolve().parent)


def load_default() -> Environment:
    """The built-in default environment (Meridio's e2e environment, dual-stack)."""
    return load(DEFAULT_PATH)
