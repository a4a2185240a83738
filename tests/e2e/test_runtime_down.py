"""``meridio up -f`` with a custom environment, and ``meridio down`` on a broken one (daemon killed,
namespaces missing): every namespace, process and file goes."""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import yaml

from meridio.kernel import netns as netnsmod
from meridio.runtime.local.layout import state_root
from tests.e2e.framework import namespace_pids

NAME, PREFIX = "e2edown", "mdown"
GATEWAY_BGP = {"local-asn": 8103, "remote-asn": 4248829953, "hold-time": "24s", "local-port": 10179,
               "remote-port": 10179, "bfd": {"switch": True, "min-tx": "300ms", "min-rx": "300ms", "multiplier": 5}}
NAD_CONFIG = ('{"cniVersion": "0.4.0", "plugins": [{"type": "bridge", "vlan": 300, "ipam": {"type": "whereabouts", '
              '"ipRanges": [{"range": "169.254.200.0/24", "exclude": ["169.254.200.150/32"]}]}}]}')


def _obj(kind: str, name: str, spec: dict, labels: bool = True, api: str = "meridio.nordix.org/v1") -> dict:  # type: ignore[type-arg]
    meta = {"name": name, "namespace": "lab", **({"labels": {"trench": "trench-m"}} if labels else {})}
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


def _files(tmp: pathlib.Path) -> pathlib.Path:
    objs = [
        _obj("NetworkAttachmentDefinition", "m-nad", {"config": NAD_CONFIG}, False, "k8s.cni.cncf.io/v1"),
        _obj("Trench", "trench-m", {"ip-family": "ipv4"}, False),
        _obj("Gateway", "gw-m", {"address": "169.254.200.150", "bgp": GATEWAY_BGP}),
        _obj("Vip", "vip-m", {"address": "198.51.100.1/32"}),
        _obj("Conduit", "conduit-m", {"type": "stateless-lb"}),
        _obj("Stream", "stream-m", {"conduit": "conduit-m"}),
        _obj("Flow", "flow-m", {"stream": "stream-m", "vips": ["vip-m"], "protocols": ["tcp"], "priority": 1,
                                "destination-ports": ["4000"], "source-subnets": ["0.0.0.0/0"]}),
        _obj("Attractor", "attractor-m", {"replicas": 1, "composites": ["conduit-m"], "gateways": ["gw-m"],
                                          "vips": ["vip-m"], "interface": {"name": "ext0", "type": "network-attachment",
                                                                           "network-attachments": [{"name": "m-nad",
                                                                                                    "namespace": "lab"}]}}),
    ]
    (tmp / "m.yaml").write_text(yaml.safe_dump_all(objs))
    env = {"name": NAME, "prefix": PREFIX, "nodes": ["node-1"],
           "networks": [{"name": "seg", "vlan": 300, "ipv4": "169.254.200.0/24"}],
           "routers": [{"name": "gw", "trench": "trench-m", "network": "seg", "ipv4": "169.254.200.150",
                        "bgp": {"hold-time": "24s", "bfd": {"min-rx": "300ms", "min-tx": "300ms", "multiplier": 5}},
                        "traffic-generator": {"ipv4": "192.0.2.0/24"}}],
           "deployments": [{"name": "tm", "namespace": "lab", "replicas": 1,
                            "streams": [{"trench": "trench-m", "conduit": "conduit-m", "stream": "stream-m"}]}],
           "resources": ["m.yaml"]}
    (tmp / "env.yaml").write_text(yaml.safe_dump(env))
    return tmp / "env.yaml"


def _meridio(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meridio.cli.main", *args], check=False, capture_output=True, text=True,
                          timeout=300)


def test_a_custom_environment_serves_traffic_and_down_removes_it_all_even_when_broken(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env_file = _files(tmp_path)
    try:
        up = _meridio("up", "-f", str(env_file), "--timeout", "120")
        assert up.returncode == 0, up.stderr
        done = _meridio("traffic", "--env", NAME, "--trench", "trench-m", "--vip", "198.51.100.1", "--port", "4000",
                        "-o", "json")
        report = yaml.safe_load(done.stdout)
        assert report["hosts"] == {"tm-0": 400} and report["lost"] == 0
        pids = namespace_pids(f"{PREFIX}-")
        assert len(pids) >= 8  # nsp, ipam, lb, frontend + its bird, proxy, example target, tapa, router bird
        daemon = int((state_root(NAME) / "runtime.pid").read_text().split()[0])
        os.kill(daemon, signal.SIGKILL)  # broken: no daemon, and a namespace gone under its processes
        subprocess.run(["ip", "netns", "del", f"{PREFIX}-rtr-gw"], check=True)
    finally:
        down = _meridio("down", "--env", NAME)
    assert down.returncode == 0, down.stderr
    assert not [ns for ns in netnsmod.list_names() if ns.startswith(f"{PREFIX}-")]
    assert not [p for p in pids | {daemon} if os.path.exists(f"/proc/{p}") and
                pathlib.Path(f"/proc/{p}/stat").read_text().split(")")[1].split()[0] != "Z"]
    assert not state_root(NAME).exists()
