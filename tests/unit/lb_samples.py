"""Sample load-balancer configurations shared by the LB unit tests and the golden-file check in tests/netns."""
from __future__ import annotations

import ipaddress
import pathlib

from meridio.api import model
from meridio.loadbalancer import flows as fl
from meridio.loadbalancer.ruleset import LbConfig, StreamState

GOLDEN = pathlib.Path(__file__).parent / "golden"
TRENCH = model.Trench("trench-a")
CONDUIT = model.Conduit("conduit-a", TRENCH)
VIPS = (model.Vip("vip-a", "203.0.113.10/32", TRENCH), model.Vip("vip-b", "2001:db8:f::10/128", TRENCH),
        model.Vip("range", "198.51.100.0/24", TRENCH))


def stream(name: str, max_targets: int = 3) -> model.Stream:
    return model.Stream(name, CONDUIT, max_targets)


def target(identifier: int) -> fl.TargetSpec:
    return fl.TargetSpec(identifier, (ipaddress.ip_address(f"169.254.101.{identifier}"),
                                      ipaddress.ip_address(f"2001:db8:101::{identifier}")))


def flows() -> tuple[fl.FlowSpec, ...]:
    return (
        fl.flow_spec(model.Flow("web", stream("stream-a"), 2, ("tcp", "udp"), ("192.0.2.0/24", "2001:db8:e::/64"),
                                (), ("80", "4000-4010"), VIPS)),
        fl.flow_spec(model.Flow("special", stream("stream-b"), 5, ("tcp",), (), ("any",), ("0-65535",),
                                (VIPS[0], model.Vip("one", "198.51.100.7/32", TRENCH)), ("tcp[2:2] = 4002",))),
        fl.flow_spec(model.Flow("sctp", stream("stream-b"), 1, ("sctp",), (), ("40000-40100",), ("9000",),
                                (VIPS[1],))),
    )


def config(targets_a: tuple[int, ...] = (1, 2), targets_b: tuple[int, ...] = (3,), *,
           with_nat: bool = True, flow_set: tuple[fl.FlowSpec, ...] | None = None) -> LbConfig:
    nats = (fl.port_nat_spec("conduit-a", model.PortNat(80, 4000, "tcp", VIPS[:2])),) if with_nat else ()
    return LbConfig(
        vips=fl.vip_networks("trench", "trench-a", VIPS),
        streams=(StreamState("stream-a", 3, 5000, tuple(target(i) for i in targets_a)),
                 StreamState("stream-b", 3, 5003, tuple(target(i) for i in targets_b))),
        flows=flows() if flow_set is None else flow_set,
        port_nats=nats,
        target_interface_prefix="tgt",
    )
