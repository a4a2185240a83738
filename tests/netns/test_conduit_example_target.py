"""The example target in a real namespace with several addresses (conduit address + VIPs).

Real: network namespaces, veth, addresses, the ``meridio example-target`` process. A client namespace
routes the VIPs to the target. Checks that UDP replies leave from the address the datagram was sent to.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from meridio.kernel import netns as netnsmod
from tests.conftest import wait_for

pytestmark = pytest.mark.netns

VIP4, VIP6 = "203.0.113.1", "2001:db8::1"
TGT4, TGT6 = "192.0.2.10", "2001:db8:1::10"

CLIENT = r"""
import json, socket, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
if kind == "udp":
    s = socket.socket(family, socket.SOCK_DGRAM); s.settimeout(2)
    s.sendto(b"payload", (host, port))
    data, source = s.recvfrom(2000)
    print(json.dumps({"data": data.decode(), "source": source[0]}))
else:
    s = socket.create_connection((host, port), timeout=2)
    f = s.makefile("rwb")
    name = f.readline().decode()
    f.write(b"echo me\n"); f.flush()
    print(json.dumps({"name": name, "echo": f.readline().decode()}))
"""


def _ip(ns: str, *args: str) -> None:
    netnsmod.run(ns, ["ip", *args])


def _client(ns: str, kind: str, host: str, port: int) -> dict[str, str]:
    out = netnsmod.run(ns, [sys.executable, "-c", CLIENT, kind, host, str(port)], timeout=10)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def topology(netns):  # type: ignore[no-untyped-def]
    cli, tgt = netns("cli"), netns("tgt")
    subprocess.run(["ip", "link", "add", "veth-c", "netns", cli, "type", "veth", "peer", "name", "veth-t",
                    "netns", tgt], check=True)
    _ip(tgt, "addr", "add", f"{TGT4}/24", "dev", "veth-t")
    _ip(tgt, "addr", "add", f"{TGT6}/64", "dev", "veth-t", "nodad")
    _ip(tgt, "addr", "add", f"{VIP4}/32", "dev", "veth-t")
    _ip(tgt, "addr", "add", f"{VIP6}/128", "dev", "veth-t", "nodad")
    _ip(cli, "addr", "add", "192.0.2.1/24", "dev", "veth-c")
    _ip(cli, "addr", "add", "2001:db8:1::1/64", "dev", "veth-c", "nodad")
    for ns, dev in ((cli, "veth-c"), (tgt, "veth-t")):
        _ip(ns, "link", "set", dev, "up")
    _ip(cli, "route", "add", f"{VIP4}/32", "via", TGT4)
    _ip(cli, "route", "add", f"{VIP6}/128", "via", TGT6)
    return cli, tgt


def _start(procs, tgt: str, cli: str):  # type: ignore[no-untyped-def]
    proc = procs.meridio("example-target", "--name", "target-x", "--tcp-ports", "4000", "--udp-ports", "4003",
                         ns=tgt, name="example-target")

    def up() -> bool:
        assert proc.poll() is None, procs.output(proc)
        return netnsmod.run(cli, [sys.executable, "-c", CLIENT, "tcp", TGT4, "4000"], check=False).returncode == 0
    wait_for(up, timeout=15, message="the example target to listen")
    return proc


@pytest.mark.parametrize("destination", [VIP4, VIP6, TGT4, TGT6], ids=["vip-v4", "vip-v6", "conduit-v4", "conduit-v6"])
def test_udp_replies_leave_from_the_address_the_datagram_was_sent_to(topology, procs, destination: str) -> None:  # type: ignore[no-untyped-def]
    cli, tgt = topology
    _start(procs, tgt, cli)
    assert _client(cli, "udp", destination, 4003) == {"data": "target-x\npayload", "source": destination}


@pytest.mark.parametrize("destination", [VIP4, VIP6], ids=["v4", "v6"])
def test_tcp_to_a_vip_gets_the_name_then_the_echo(topology, procs, destination: str) -> None:  # type: ignore[no-untyped-def]
    cli, tgt = topology
    _start(procs, tgt, cli)
    assert _client(cli, "tcp", destination, 4000) == {"name": "target-x\n", "echo": "echo me\n"}


def test_sigterm_stops_the_example_target_with_status_zero(topology, procs) -> None:  # type: ignore[no-untyped-def]
    cli, tgt = topology
    proc = _start(procs, tgt, cli)
    assert procs.stop(proc) == 0
