"""A reusable client -> LB -> N targets topology in network namespaces, with traffic helpers.

```
client ns          LB ns                                   target ns tN (N = 1..)
ext0 192.0.2.1 ─── ext0 192.0.2.2                           eth0 169.254.101.N / 2001:db8:101::N
     2001:db8:e::1      2001:db8:e::2                       lo: the VIPs (/32, /128)
                   <prefix>0 (bridge) 169.254.101.254 ───── default via the LB bridge address
                                      2001:db8:101::fe
```
The LB namespace forwards (v4 and v6) and has nothing else: the tests program it with the load
balancer's own code. Checksum offload is off on every veth so receivers really check L4 checksums.
A target's responder (:data:`RESPONDER`) answers TCP connections and UDP datagrams with
``"<name> <bytes received>"`` (padded to 3000 bytes when the datagram starts with ``BIG``). Clients run
in a thread switched into the client namespace.
Everything is created through the ``netns`` fixture, so it all goes away at teardown.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import errno
import pathlib
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from meridio.kernel import netlink
from meridio.kernel import netns as netnsmod
from meridio.kernel.netlink import Netlink

T = TypeVar("T")

CLIENT = {4: "192.0.2.1", 6: "2001:db8:e::1"}
LB_EXT = {4: "192.0.2.2", 6: "2001:db8:e::2"}
LB_INT = {4: "169.254.101.254", 6: "2001:db8:101::fe"}
VIPS = {4: ("203.0.113.10", "203.0.113.20"), 6: ("2001:db8:f::10", "2001:db8:f::20")}


def target_ip(i: int, version: int) -> str:
    return f"169.254.101.{i}" if version == 4 else f"2001:db8:101::{i:x}"


@dataclasses.dataclass
class LbTopology:
    client: str
    lb: str
    targets: dict[int, str]
    """target number -> namespace."""
    target_prefix: str

    def name_of(self, i: int) -> str:
        return f"t{i}"

    @property
    def bridge(self) -> str:
        return f"{self.target_prefix}0"


def _ethtool_tx_off(ns: str, dev: str) -> None:
    subprocess.run(netnsmod.exec_argv(ns, ["ethtool", "-K", dev, "tx", "off"]), capture_output=True, check=False)


def build(netns: Callable[[str], str], *, targets: int = 3, target_prefix: str = "tgt",
          vips: dict[int, tuple[str, ...]] = VIPS) -> LbTopology:
    client, lb = netns("c"), netns("lb")
    topo = LbTopology(client, lb, {i: netns(f"t{i}") for i in range(1, targets + 1)}, target_prefix)
    for ns in (client, lb, *topo.targets.values()):
        # No DAD anywhere, link-local addresses included: a tentative address delays the first packets.
        for sysctl in ("net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"):
            netlink.set_sysctl(sysctl, 0, netns=ns)
    with Netlink(lb) as nl:
        nl.add_veth("ext0", "cext0", peer_netns=client, peer_name="ext0")
        nl.add_bridge(topo.bridge)
        nl.set_link(topo.bridge, up=True)
        for v in (4, 6):
            nl.add_address("ext0", f"{LB_EXT[v]}/{24 if v == 4 else 64}")
            nl.add_address(topo.bridge, f"{LB_INT[v]}/{24 if v == 4 else 64}")
        nl.set_link("ext0", up=True)
        for i, ns in topo.targets.items():
            port = f"{target_prefix}p{i}"
            nl.add_veth(port, f"tmp{i}", peer_netns=ns, peer_name="eth0")
            nl.set_link(port, master=topo.bridge, up=True)
    for sysctl in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"):
        netlink.set_sysctl(sysctl, 1, netns=lb)
    for sysctl in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"):
        netlink.set_sysctl(sysctl, 0, netns=lb)
    with Netlink(client) as nl:
        for v in (4, 6):
            nl.add_address("ext0", f"{CLIENT[v]}/{24 if v == 4 else 64}")
        nl.set_link("ext0", up=True)
        for v in (4, 6):
            nl.replace_route("default", gateway=LB_EXT[v])
    _ethtool_tx_off(client, "ext0")
    _ethtool_tx_off(lb, "ext0")
    for i, ns in topo.targets.items():
        with Netlink(ns) as nl:
            for v in (4, 6):
                nl.add_address("eth0", f"{target_ip(i, v)}/{24 if v == 4 else 64}")
                for vip in vips[v]:
                    nl.add_address("lo", f"{vip}/{32 if v == 4 else 128}")
            nl.set_link("eth0", up=True)
            for v in (4, 6):
                nl.replace_route("default", gateway=LB_INT[v])
        _ethtool_tx_off(ns, "eth0")
        _ethtool_tx_off(lb, f"{target_prefix}p{i}")
    return topo


# --- running code inside a namespace -----------------------------------------------------------

def in_netns(ns: str, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a thread switched into ``ns`` (sockets it opens live in ``ns``)."""
    def inside() -> T:
        with netnsmod.entered(ns):
            return fn(*args)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(inside).result()


# --- target responders -------------------------------------------------------------------------

RESPONDER = textwrap.dedent('''
    import selectors, socket, sys, threading
    name, ports, vips = sys.argv[1], [int(p) for p in sys.argv[2].split(",")], sys.argv[3].split(",")
    echo_ports = {int(p) for p in sys.argv[4].split(",") if p} if len(sys.argv) > 4 else set()

    def echo(c):
        try:
            while data := c.recv(4096):
                c.sendall(name.encode() + b" " + data)
        except OSError:
            pass
        finally:
            c.close()

    sel = selectors.DefaultSelector()
    for port in ports:
        t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        t.bind(("::", port)); t.listen(512); t.setblocking(False)
        sel.register(t, selectors.EVENT_READ, "echo" if port in echo_ports else "tcp")
        for vip in vips:
            fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
            u = socket.socket(fam, socket.SOCK_DGRAM); u.bind((vip, port)); u.setblocking(False)
            sel.register(u, selectors.EVENT_READ, "udp")
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            try:
                if key.data == "echo":
                    c, _ = s.accept(); c.setblocking(True)
                    threading.Thread(target=echo, args=(c,), daemon=True).start()
                elif key.data == "tcp":
                    c, _ = s.accept(); c.settimeout(2)
                    try:
                        c.sendall(name.encode())
                    finally:
                        c.close()
                else:
                    while True:
                        data, peer = s.recvfrom(65535)
                        reply = f"{name} {len(data)}".encode()
                        if data.startswith(b"BIG"):  # ask for a reply that has to be fragmented
                            reply = reply.ljust(3000, b".")
                        s.sendto(reply, peer)
            except (BlockingIOError, OSError):
                pass
''')


def start_responders(procs: Any, topo: LbTopology, ports: Iterable[int], *,
                     vips: dict[int, tuple[str, ...]] = VIPS, echo_ports: Iterable[int] = ()) -> None:
    """One responder per target (TCP dual-stack on ``ports``, UDP bound to every VIP); waits until ready.

    TCP connections to ``echo_ports`` stay open and echo each message prefixed with the target's name.
    """
    all_vips = ",".join(vips[4] + vips[6])
    echo = ",".join(map(str, echo_ports))
    ports = sorted(set(ports) | set(echo_ports))
    started = [procs.start([sys.executable, "-c", RESPONDER, topo.name_of(i), ",".join(map(str, ports)), all_vips,
                            echo],
                           ns=ns, name=f"responder-t{i}") for i, ns in topo.targets.items()]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all("ready" in procs.output(p) for p in started):
            return
        if any(p.poll() is not None for p in started):
            break
        time.sleep(0.05)
    raise RuntimeError("responders did not start: " + " | ".join(procs.output(p) for p in started))


# --- clients -----------------------------------------------------------------------------------

def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _tcp_once(vip: str, port: int, sport: int | None, timeout: float) -> str | None:
    s = socket.socket(_family(vip), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(timeout)
    try:
        if sport is not None:
            s.bind(("::" if ":" in vip else "0.0.0.0", sport))
        s.connect((vip, port))
        data = b""
        while chunk := s.recv(64):
            data += chunk
        return data.decode() or None
    except OSError:
        return None
    finally:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST: 5-tuple reusable now
        s.close()


def tcp_names(ns: str, vip: str, port: int, sports: Iterable[int | None], *,
              timeout: float = 2.0) -> list[str | None]:
    """Connect once per source port (``None``: any) and return the name each connection got (None = failed)."""
    sports = list(sports)
    return in_netns(ns, lambda: [_tcp_once(vip, port, sp, timeout) for sp in sports])


def _udp_once(vip: str, port: int, sport: int | None, sizes: Iterable[int], timeout: float) -> list[str | None]:
    s = socket.socket(_family(vip), socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(timeout)
    out: list[str | None] = []
    try:
        if sport is not None:
            s.bind(("::" if ":" in vip else "0.0.0.0", sport))
        if ":" in vip:
            s.setsockopt(socket.IPPROTO_IPV6, 23, 0)  # IPV6_DONTFRAG off: let the kernel fragment
        for size in sizes:
            try:
                s.sendto(b"x" * size, (vip, port))
                out.append(s.recv(256).decode())
            except OSError as exc:
                if exc.errno not in (None, errno.EAGAIN, errno.ECONNREFUSED) and not isinstance(exc, TimeoutError):
                    raise
                out.append(None)
    finally:
        s.close()
    return out


def udp_names(ns: str, vip: str, port: int, sports: Iterable[int | None], *, sizes: Iterable[int] = (16,),
              timeout: float = 2.0) -> list[list[str | None]]:
    """Per source port, send one datagram of each size from one socket; the replies (``name bytes``)."""
    sports, sizes = list(sports), list(sizes)
    return in_netns(ns, lambda: [_udp_once(vip, port, sp, sizes, timeout) for sp in sports])


def mac_of(ns: str, ifname: str) -> str:
    with Netlink(ns) as nl:
        index = nl.link_index(ifname)
        return str(nl._ipr.get_links(index)[0].get_attr("IFLA_ADDRESS"))


def send_frames(ns: str, ifname: str, frames: Iterable[bytes]) -> None:
    """Send raw Ethernet frames (e.g. ``bytes(scapy_packet)``) out of ``ifname`` in ``ns``."""
    frames = list(frames)

    def send() -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind((ifname, 0))
            for frame in frames:
                s.send(frame)

    in_netns(ns, send)


# --- probes in targets -------------------------------------------------------------------------

def probe_counters(topo: LbTopology, rules: dict[str, str]) -> None:
    """Install ``table inet probe`` with one named counter per rule (matched at prerouting) in every target."""
    lines = ["add table inet probe",
             "add chain inet probe pre { type filter hook prerouting priority -400; policy accept; }"]
    for name, match in rules.items():
        lines += [f"add counter inet probe {name}", f'add rule inet probe pre {match} counter name "{name}"']
    for ns in topo.targets.values():
        netnsmod.run(ns, ["nft", "-f", "-"], input="\n".join(lines) + "\n")


def read_probes(topo: LbTopology) -> dict[int, dict[str, int]]:
    """target number -> counter name -> packets."""
    import json

    out = {}
    for i, ns in topo.targets.items():
        listing = json.loads(netnsmod.run(ns, ["nft", "-j", "list", "counters", "table", "inet", "probe"]).stdout)
        out[i] = {o["counter"]["name"]: o["counter"]["packets"] for o in listing["nftables"] if "counter" in o}
    return out


# --- programming the LB namespace with the load balancer's own code ------------------------------

class LbUnderTest:
    """The data path of one LB namespace driven by :class:`meridio.loadbalancer.reconciler.Reconciler`."""

    def __init__(self, topo: LbTopology, *, offset_start: int = 5000, rule_priority: int = 90,
                 fastpath: bool = True, pin_dir: pathlib.Path | None = None) -> None:
        """``fastpath``: run the eBPF fast path (as the daemon does by default) from ``pin_dir``, a bpffs
        the caller mounted, or from a private bpffs made here and unmounted by :meth:`close`;
        False: nftables only."""
        from meridio.kernel import bpf, nftables
        from meridio.loadbalancer import datapath, offsets, reconciler, routing

        self.topo = topo
        self.nft = nftables.Nft(netns=topo.lb)
        self.nl = Netlink(topo.lb)
        self.datapath = datapath.NftDataPath(self.nft)
        self.fastpath = None
        self._own_bpffs: pathlib.Path | None = None
        if fastpath:
            from meridio.loadbalancer.fastpath import FastPath

            if pin_dir is None:
                pin_dir = self._own_bpffs = pathlib.Path(tempfile.mkdtemp(prefix="meridio-bpffs-"))
                bpf.mount_bpffs(pin_dir)
            self.fastpath = FastPath(self.nl, pin_dir=pin_dir, first_fwmark=offset_start,
                                     exclude_prefix=topo.target_prefix, netns=topo.lb)
        self.reconciler = reconciler.Reconciler(
            self.datapath, routing.TargetRouting(self.nl, rule_priority=rule_priority, first_table=offset_start),
            offsets.OffsetAllocator(offset_start), target_interface_prefix=topo.target_prefix,
            fastpath=self.fastpath)
        self.reconciler.start()

    def target(self, i: int, identifier: int | None = None) -> Any:
        import ipaddress

        from meridio.loadbalancer.flows import TargetSpec

        ips = (ipaddress.ip_address(target_ip(i, 4)), ipaddress.ip_address(target_ip(i, 6)))
        return TargetSpec(identifier or i, ips)

    def program(self, *, flows: Iterable[Any], streams: dict[str, Iterable[int]], max_targets: int = 100,
                nats: Iterable[Any] = (), vips: Iterable[str] = VIPS[4] + VIPS[6]) -> Any:
        """Program VIPs, streams (name -> target numbers, identifier = number) and nsp.v1 flows."""
        from meridio.loadbalancer import flows as flowsmod
        from meridio.loadbalancer.reconciler import Desired, StreamInput

        desired = Desired(
            vips=tuple(flowsmod.parse_network(v if "/" in v else f"{v}/{128 if ':' in v else 32}") for v in vips),
            streams=tuple(StreamInput(name, max_targets, tuple(self.target(i) for i in ids))
                          for name, ids in streams.items()),
            flows=tuple(flowsmod.flow_spec(f) for f in flows),
            port_nats=tuple(nats))
        return self.reconciler.reconcile(desired)

    def counters(self) -> dict[str, int]:
        """Packets per nft counter name, the fast path's forwarded packets added (as the LB reports them)."""
        out = {name: c.packets for name, c in self.datapath.counters().items()}
        for name, c in (self.fastpath.counters() if self.fastpath else {}).items():
            out[name] = out.get(name, 0) + c.packets
        return out

    def close(self) -> None:
        """Close the handles; a fast path on a bpffs made here is removed with it (pins, attachment)."""
        from meridio.kernel import bpf

        if self.fastpath is not None:
            if self._own_bpffs is not None:
                self.fastpath.remove()
                bpf.unmount_bpffs(self._own_bpffs)
            else:
                self.fastpath.close()
        self.nl.close()
        self.nft.close()


# --- nsp.v1 model shortcuts for tests ----------------------------------------------------------

def model_flow(name: str, stream: str = "stream-a", *, priority: int = 1, protocols: tuple[str, ...] = ("tcp", "udp"),
               dports: tuple[str, ...] = (), sports: tuple[str, ...] = (), sources: tuple[str, ...] = (),
               vips: tuple[str, ...] = VIPS[4] + VIPS[6], byte_matches: tuple[str, ...] = (),
               conduit: str = "conduit-a", trench: str = "trench-a", max_targets: int = 100) -> Any:
    """An nsp.v1 Flow (as :mod:`meridio.api.model`); VIPs without prefix length are /32 or /128."""
    from meridio.api import model

    tr = model.Trench(trench)
    return model.Flow(name, model.Stream(stream, model.Conduit(conduit, tr), max_targets), priority, protocols,
                      sources, sports, dports,
                      tuple(model.Vip(v, v if "/" in v else f"{v}/{128 if ':' in v else 32}", tr) for v in vips),
                      byte_matches)
