"""The proxy's state logic (forwarder, LB links, target links) over in-memory fakes of the kernel and IPAM.

Fakes: :class:`FakeDataplane` (namespaces as dicts of interfaces, veths as index pairs) and
:class:`FakeIpam` (first-fit per child name); time is a :class:`~meridio.common.clock.FakeClock`.
The real adapters run in ``tests/netns/test_proxy_*``.
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
from typing import Any

import pytest

from meridio.api import model
from meridio.common.clock import FakeClock
from meridio.common.grpcutil import FailedPrecondition
from meridio.common.retry import TemporaryError
from meridio.kernel import pins
from meridio.proxy import dataplane, deadlines, names, plan
from meridio.proxy.context import Config, Context
from meridio.proxy.forwarder import Forwarder
from meridio.proxy.targets import PermissionDenied, Unauthenticated

HOME = "home"
CONDUIT = model.Conduit("conduit-a-1", model.Trench("trench-a"))


@dataclasses.dataclass
class Iface:
    index: int
    alias: str | None = None
    peer: tuple[Any, int] | None = None
    """(namespace key, index) of the other end of a veth."""
    addresses: frozenset[str] = frozenset()
    master: str | None = None
    state: plan.IfaceState | None = None


class FakeDataplane:
    """FAKE kernel: enough of :class:`meridio.proxy.dataplane.Dataplane` to run the state logic."""

    def __init__(self) -> None:
        self.ns: dict[Any, dict[str, Iface]] = {HOME: {}}
        self.bridge: frozenset[str] = frozenset()
        self.egress: plan.Egress | None = None
        self.egress_calls: list[tuple[bool, bool]] = []
        self._index = itertools.count(2)
        self.created: list[str] = []
        self.forgotten: list[str] = []

    def _space(self, ns: Any) -> dict[str, Iface]:
        key = HOME if ns is None else ns
        if key not in self.ns:
            raise dataplane.NamespaceGone(f"namespace {ns} does not exist")
        return self.ns[key]

    async def setup(self) -> None:
        self.ns[HOME].setdefault("bridge0", Iface(next(self._index)))

    async def bridge_addresses(self) -> tuple[str, ...]:
        return tuple(sorted(self.bridge, key=plan.address_key))

    async def set_bridge_addresses(self, addresses: Any) -> None:
        self.bridge = frozenset(addresses)

    async def ports(self) -> list[dataplane.Port]:
        return [dataplane.Port(name, i.index, None, i.alias, None, i.peer[1] if i.peer else None)
                for name, i in self.ns[HOME].items()]

    async def far_end(self, ns: Any, index: int) -> dataplane.FarEnd | None:
        for name, i in self._space(ns).items():
            if i.index == index:
                return dataplane.FarEnd(name, index, i.alias, i.peer[1] if i.peer else None, i.addresses)
        return None

    async def create_link(self, *, port: str, port_alias: str, ns: Any, far_name: str, far_alias: str) -> int:
        space = self._space(ns)
        if far_name in space:
            raise dataplane.NameTaken(f"interface {far_name} already exists in the namespace")
        p, f = next(self._index), next(self._index)
        self.ns[HOME][port] = Iface(p, port_alias, (ns, f), master="bridge0")
        space[far_name] = Iface(f, far_alias, (None, p))
        self.created.append(port)
        return f

    async def set_port_alias(self, name: str, alias: str) -> None:
        self.ns[HOME][name].alias = alias

    async def delete_port(self, name: str) -> bool:
        iface = self.ns[HOME].pop(name, None)
        if iface is None:
            return False
        if iface.peer is not None and iface.peer[0] in self.ns:
            space = self.ns[iface.peer[0]]
            for far, i in list(space.items()):
                if i.index == iface.peer[1]:
                    del space[far]
        return True

    def vanish(self, ns: Any) -> None:
        """A namespace is destroyed: its veth ends die, and their peers with them."""
        for iface in self.ns.pop(ns).values():
            if iface.peer is not None:
                for name, i in list(self.ns[HOME].items()):
                    if i.index == iface.peer[1]:
                        del self.ns[HOME][name]

    async def configure_lb_end(self, ns: Any, name: str, addresses: Any, *, up: bool = True) -> None:
        self._space(ns)[name].addresses = frozenset(addresses)

    async def forget_neighbours(self, addresses: Any) -> None:
        self.forgotten.extend(addresses)

    async def configure_target_end(self, ns: Any, name: str, state: plan.IfaceState) -> int:
        iface = self._space(ns)[name]
        iface.addresses, iface.state = state.addresses, state
        return plan.target_table(iface.index)

    async def clear_target_end(self, ns: Any, name: str) -> None:
        iface = self._space(ns).get(name)
        if iface is not None:
            iface.state = None

    async def set_egress(self, egress: plan.Egress, *, rules: bool = True, routes: bool = True) -> None:
        self.egress_calls.append((rules, routes))
        self.egress = egress


class FakeIpam:
    """FAKE IPAM: one address per child per family, first fit in 172.16.1.0/24 and fd00:0:0:1::/64."""

    def __init__(self) -> None:
        self.children: dict[str, int] = {"bridge": 1}
        self.released: list[str] = []
        self.down = False

    async def allocate(self, name: str) -> tuple[str, ...]:
        if self.down:
            raise TemporaryError("IPAM unreachable")
        if name not in self.children:
            self.children[name] = min(set(range(1, 254)) - set(self.children.values()))
        n = self.children[name]
        return (f"172.16.1.{n}/24", f"fd00:0:0:1::{n:x}/64")

    async def release(self, name: str) -> None:
        if self.down:
            raise TemporaryError("IPAM unreachable")
        self.released.append(name)
        self.children.pop(name, None)


def owner_alive() -> pins.Owner:
    start = pins.process_start_time(os.getpid())
    assert start is not None
    return pins.Owner(os.getpid(), start)


OWN_INODE = os.stat("/proc/self/ns/net").st_ino
DEAD = pins.Owner(os.getpid(), 1)  # this pid, but another start time: a process that has exited


def pinned(ns_fd: int, *, inode: int | None = None, owner: pins.Owner | None = None) -> pins.PinnedNs:
    """A pin whose 'fd' is the fake namespace key (the fake dataplane never uses it as a real fd)."""
    return pins.PinnedNs(ns_fd, owner or owner_alive(), inode if inode is not None else ns_fd)


@pytest.fixture(autouse=True)
def no_real_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake pins hold fake fds: closing must not close real descriptors of the test process."""
    def close(self: pins.PinnedNs) -> None:
        self.ns_fd = self.pidfd = -1
    monkeypatch.setattr(pins.PinnedNs, "close", close)


class Bed:
    def __init__(self, **config: Any) -> None:
        self.clock = FakeClock()
        self.dp = FakeDataplane()
        self.ipam = FakeIpam()
        self.cfg = Config("trench-a", "conduit-a-1", "node-1", **{"release_delay": 20.0, "orphan_timeout": 30.0,
                                                                  **config})
        self.pods: dict[str, int] = {}
        """FAKE ``pod_netns`` paths: path -> namespace key (what the path would stat as)."""
        self.fwd = self.new_forwarder()

    def new_forwarder(self) -> Forwarder:
        return Forwarder(Context(self.cfg, self.dp, self.ipam,  # type: ignore[arg-type]
                                 deadlines.Deadlines(self.cfg.release_delay), self.clock.monotonic,
                                 namespace_at=self.namespace_at))

    def namespace_at(self, pin: pins.PinnedNs, path: str) -> bool | None:
        key = self.pods.get(path)
        return None if key is None else key == pin.inode

    def target_ns(self, key: int) -> int:
        self.dp.ns[key] = {}
        return key


def lb_target(ident: str, netns: str | None = None) -> model.Target:
    return model.Target.make(type=model.TargetType.LOADBALANCER,
                             context={"identifier": ident, "netns": netns or ident, "ifprefix": "cond-a"},
                             stream=model.Stream("", CONDUIT))


def flows(*vips: str) -> list[model.Flow]:
    return [model.Flow("f", model.Stream("s", CONDUIT), vips=tuple(model.Vip(v, v) for v in vips))]


async def started(**config: Any) -> Bed:
    bed = Bed(**config)
    await bed.fwd.start()
    return bed


# --- LB side and egress --------------------------------------------------------------------------

async def test_egress_is_left_alone_until_the_replicas_and_the_vips_are_known() -> None:
    bed = await started()
    assert bed.dp.egress_calls == []
    bed.dp.ns["/run/netns/lb-1"] = {}
    await bed.fwd.set_lb_targets([lb_target("lb-1", "lb-1")])
    assert bed.dp.egress_calls == [(False, True)]
    await bed.fwd.set_vips([model.Vip("v", "203.0.113.1/32")])
    assert bed.dp.egress_calls[-1] == (True, True)
    assert bed.dp.egress is not None and bed.dp.egress.rules == {"203.0.113.1/32"}
    assert bed.dp.egress.nexthops == {4: ("172.16.1.2",), 6: ("fd00:0:0:1::2",)}


async def test_an_lb_whose_namespace_is_missing_is_linked_once_it_exists() -> None:
    bed = await started()
    await bed.fwd.set_lb_targets([lb_target("lb-1")])
    assert bed.fwd.lb.links == {} and not bed.fwd.ready
    bed.dp.ns["/run/netns/lb-1"] = {}
    await bed.fwd.tick()
    assert list(bed.fwd.lb.links) == ["lb-1"] and bed.fwd.ready
    # a new link's far end has a new MAC: the proxy forgets what it cached for those addresses
    assert bed.dp.forgotten == list(bed.fwd.lb.links["lb-1"].addresses)


async def test_a_taken_lb_interface_name_is_avoided() -> None:
    bed = await started()
    dataplane_name = names.lb_far_name("cond-a", trench="trench-a", conduit="conduit-a-1", node="node-1")
    bed.dp.ns["/run/netns/lb-1"] = {dataplane_name: Iface(99)}
    await bed.fwd.set_lb_targets([lb_target("lb-1")])
    name = bed.fwd.lb.links["lb-1"].far_name
    assert name != dataplane_name and name.startswith("cond-a-")


async def test_a_departed_lb_loses_its_link_and_its_address_after_the_delay() -> None:
    bed = await started(release_delay=5.0)
    bed.dp.ns["/run/netns/lb-1"] = {}
    await bed.fwd.set_lb_targets([lb_target("lb-1")])
    await bed.fwd.set_lb_targets([])
    assert not any(n.startswith("pl-") for n in bed.dp.ns[HOME])
    await bed.fwd.tick()
    assert bed.ipam.released == []
    bed.clock.advance(5.0)
    await bed.fwd.tick()
    assert bed.ipam.released == ["lb:lb-1-src"]


# --- target links --------------------------------------------------------------------------------

async def test_connect_gives_the_target_its_address_the_gateways_and_the_conduit_vips() -> None:
    bed = await started()
    await bed.fwd.set_flows(flows("203.0.113.1/32", "2001:db8::1/128"))
    info = await bed.fwd.connect("target-1", "nsm-0", pinned(bed.target_ns(7)))
    assert info.addresses == ("172.16.1.2/24", "fd00:0:0:1::2/64")
    assert info.gateways == ("172.16.1.1", "fd00:0:0:1::1")
    assert info.vips == ("203.0.113.1/32", "2001:db8::1/128")
    state = bed.dp.ns[7]["nsm-0"].state
    assert state is not None and state.rules == {"203.0.113.1/32", "2001:db8::1/128"}


async def test_connect_before_the_flows_are_known_puts_no_vips_and_adds_them_later() -> None:
    bed = await started()
    info = await bed.fwd.connect("target-1", "nsm-0", pinned(bed.target_ns(7)))
    assert info.vips == ()
    watch = bed.fwd.watch("target-1")
    assert (await watch.__anext__()).vips == ()
    await bed.fwd.set_flows(flows("203.0.113.1/32"))
    assert (await watch.__anext__()).vips == ("203.0.113.1/32",)
    await watch.aclose()


async def test_connect_again_from_the_same_namespace_reuses_the_link_and_adopts_the_new_owner() -> None:
    bed = await started()
    ns = bed.target_ns(7)
    first = await bed.fwd.connect("target-1", "nsm-0", pinned(ns))
    second = await bed.fwd.connect("target-1", "nsm-0", pinned(ns))
    assert first == second and len(bed.dp.created) == 1


async def test_connect_under_another_interface_name_is_refused() -> None:
    bed = await started()
    ns = bed.target_ns(7)
    await bed.fwd.connect("target-1", "nsm-0", pinned(ns))
    with pytest.raises(FailedPrecondition, match="^interface_name: target-1 is already linked as 'nsm-0'"):
        await bed.fwd.connect("target-1", "nsm-1", pinned(ns))


async def test_another_namespace_cannot_take_a_target_id_whose_owner_lives() -> None:
    bed = await started()
    await bed.fwd.connect("target-1", "nsm-0", pinned(bed.target_ns(7)))
    with pytest.raises(PermissionDenied, match="^target_id: target-1 is linked from another"):
        await bed.fwd.connect("target-1", "nsm-0", pinned(bed.target_ns(8)))
    with pytest.raises(PermissionDenied):
        await bed.fwd.disconnect("target-1", pinned(8))
    assert "nsm-0" in bed.dp.ns[7] and "nsm-0" not in bed.dp.ns[8]


async def test_another_namespace_cannot_take_a_target_id_while_its_namespace_exists_even_if_its_owner_died() -> None:
    bed = await started()
    await bed.fwd.connect("target-1", "nsm-0", pinned(bed.target_ns(7)))
    bed.fwd.targets.links["target-1"].pinned = None  # owner gone (unpinned by a check), namespace 7 still there
    with pytest.raises(PermissionDenied, match="^target_id: target-1 is linked from another network namespace "
                                               "that still exists"):
        await bed.fwd.connect("target-1", "nsm-0", pinned(bed.target_ns(8)))
    assert "nsm-0" in bed.dp.ns[7] and "nsm-0" not in bed.dp.ns[8]


async def test_another_namespace_replaces_a_link_whose_namespace_is_gone() -> None:
    bed = await started()
    await bed.fwd.connect("target-1", "nsm-0", pinned(bed.target_ns(7)))
    bed.fwd.targets.links["target-1"].pinned = None  # owner gone
    bed.dp.vanish(7)  # and its namespace with the veth (before the periodic check noticed)
    info = await bed.fwd.connect("target-1", "nsm-0", pinned(bed.target_ns(8)))
    assert "nsm-0" in bed.dp.ns[8]
    assert info.addresses == ("172.16.1.2/24", "fd00:0:0:1::2/64")


POD_NETNS = "/run/netns/mx-pod-{pod}"


async def test_with_pod_netns_only_a_caller_in_the_pods_namespace_gets_its_link() -> None:
    bed = await started(pod_netns=POD_NETNS)
    bed.pods["/run/netns/mx-pod-target-1"] = 7
    with pytest.raises(PermissionDenied, match=r"^target_id: the caller's network namespace is not pod target-1's "
                                               r"\(/run/netns/mx-pod-target-1\)"):
        await bed.fwd.connect("target-1", "nsm-0", pinned(bed.target_ns(8)))
    assert bed.dp.created == [] and bed.fwd.targets.links == {} and set(bed.ipam.children) == {"bridge"}
    await bed.fwd.connect("target-1", "nsm-0", pinned(bed.target_ns(7)))
    assert "nsm-0" in bed.dp.ns[7] and "nsm-0" not in bed.dp.ns[8]


async def test_with_pod_netns_a_pod_without_a_namespace_gets_no_link() -> None:
    bed = await started(pod_netns=POD_NETNS)
    with pytest.raises(PermissionDenied, match="^target_id: pod ghost has no network namespace"):
        await bed.fwd.connect("ghost", "nsm-0", pinned(bed.target_ns(7)))
    assert bed.dp.created == [] and set(bed.ipam.children) == {"bridge"}


async def test_with_pod_netns_a_recreated_pod_namespace_replaces_the_old_link() -> None:
    bed = await started(pod_netns=POD_NETNS)
    bed.pods["/run/netns/mx-pod-target-1"] = 7
    await bed.fwd.connect("target-1", "nsm-0", pinned(bed.target_ns(7)))
    bed.fwd.targets.links["target-1"].pinned = None  # the pod was deleted; its old namespace lingers
    bed.pods["/run/netns/mx-pod-target-1"] = 8  # and was made again
    await bed.fwd.connect("target-1", "nsm-0", pinned(bed.target_ns(8)))
    assert "nsm-0" in bed.dp.ns[8] and "nsm-0" not in bed.dp.ns[7]


async def test_a_credential_of_an_exited_process_is_refused() -> None:
    bed = await started()
    with pytest.raises(Unauthenticated, match="^credential: "):
        await bed.fwd.connect("target-1", "nsm-0", pinned(bed.target_ns(7), owner=DEAD))
    assert bed.dp.created == []


async def test_connect_while_ipam_is_down_creates_nothing() -> None:
    bed = await started()
    bed.ipam.down = True
    with pytest.raises(TemporaryError):
        await bed.fwd.connect("target-1", "nsm-0", pinned(bed.target_ns(7)))
    assert bed.dp.created == [] and bed.fwd.targets.links == {}


async def test_a_taken_interface_name_fails_the_connect_and_schedules_the_release() -> None:
    bed = await started(release_delay=1.0)
    ns = bed.target_ns(7)
    bed.dp.ns[ns]["nsm-0"] = Iface(50)
    with pytest.raises(FailedPrecondition, match="^interface_name: nsm-0 already exists"):
        await bed.fwd.connect("target-1", "nsm-0", pinned(ns))
    bed.clock.advance(1.0)
    await bed.fwd.tick()
    assert bed.ipam.released == ["target-1-src"]


async def test_disconnect_releases_after_the_delay_unless_the_target_comes_back() -> None:
    bed = await started(release_delay=20.0)
    ns = bed.target_ns(7)
    await bed.fwd.connect("target-1", "nsm-0", pinned(ns))
    assert await bed.fwd.disconnect("target-1", pinned(ns)) is True
    assert "nsm-0" not in bed.dp.ns[ns]
    bed.clock.advance(10.0)
    await bed.fwd.connect("target-1", "nsm-0", pinned(ns))
    bed.clock.advance(30.0)
    await bed.fwd.tick()
    assert bed.ipam.released == []
    await bed.fwd.disconnect("target-1", pinned(ns))
    bed.clock.advance(19.0)
    await bed.fwd.tick()
    assert bed.ipam.released == []
    bed.clock.advance(1.0)
    await bed.fwd.tick()
    assert bed.ipam.released == ["target-1-src"]


async def test_a_release_that_fails_is_retried() -> None:
    bed = await started(release_delay=1.0)
    ns = bed.target_ns(7)
    await bed.fwd.connect("target-1", "nsm-0", pinned(ns))
    await bed.fwd.disconnect("target-1", pinned(ns))
    bed.ipam.down = True
    bed.clock.advance(1.0)
    await bed.fwd.tick()
    bed.ipam.down = False
    bed.clock.advance(1.0)
    await bed.fwd.tick()
    assert bed.ipam.released == ["target-1-src"]


async def test_a_vanished_target_namespace_drops_the_link() -> None:
    bed = await started(release_delay=2.0)
    await bed.fwd.connect("target-1", "nsm-0", pinned(bed.target_ns(7)))
    bed.dp.vanish(7)
    await bed.fwd.tick()
    assert bed.fwd.targets.links == {}
    bed.clock.advance(2.0)
    await bed.fwd.tick()
    assert bed.ipam.released == ["target-1-src"]


async def test_a_link_whose_owner_died_is_removed_after_the_orphan_timeout() -> None:
    bed = await started(orphan_timeout=30.0)
    ns = bed.target_ns(7)
    await bed.fwd.connect("target-1", "nsm-0", pinned(ns))
    bed.fwd.targets.links["target-1"].pinned.owner = DEAD  # type: ignore[union-attr]
    await bed.fwd.tick()
    assert "target-1" in bed.fwd.targets.links
    bed.clock.advance(29.0)
    await bed.fwd.tick()
    assert "nsm-0" in bed.dp.ns[ns]
    bed.clock.advance(1.0)
    await bed.fwd.tick()
    assert "nsm-0" not in bed.dp.ns[ns] and bed.fwd.targets.links == {}


async def test_a_link_of_an_owner_whose_pid_is_not_visible_lives_while_its_tapa_watches_it() -> None:
    """Kubernetes without host PIDs: only the namespace descriptor proved the caller (pid 0)."""
    bed = await started(orphan_timeout=30.0)
    ns = bed.target_ns(7)
    await bed.fwd.connect("target-1", "nsm-0", pinned(ns, owner=pins.Owner(0, 0)))
    watch = bed.fwd.watch("target-1")
    assert (await anext(watch)).interface_name == "nsm-0"  # type: ignore[arg-type]
    bed.clock.advance(60.0)
    await bed.fwd.tick()
    assert bed.fwd.targets.links["target-1"].pinned is not None  # watched: the owner is there
    await watch.aclose()  # type: ignore[attr-defined]
    await bed.fwd.tick()
    assert bed.fwd.targets.links["target-1"].pinned is None  # nobody watches: orphaned, unpinned
    bed.clock.advance(30.0)
    await bed.fwd.tick()
    assert "nsm-0" not in bed.dp.ns[ns] and bed.fwd.targets.links == {}


# --- restart -------------------------------------------------------------------------------------

async def test_a_new_forwarder_adopts_the_links_of_the_previous_one(monkeypatch: pytest.MonkeyPatch) -> None:
    real_pin = pins.pin_owner

    def pin_owner(owner: pins.Owner, inode: int) -> pins.PinnedNs | None:
        """The real check of the owner; the pin itself is the fake namespace key."""
        real = real_pin(owner, inode)
        if real is None:
            return None
        os.close(real.ns_fd)
        os.close(real.pidfd)
        return pinned(inode, inode=inode, owner=owner)

    monkeypatch.setattr(pins, "pin_owner", pin_owner)
    bed = await started()
    bed.dp.ns["/run/netns/lb-1"] = {}
    await bed.fwd.set_lb_targets([lb_target("lb-1")])
    bed.dp.ns[OWN_INODE] = {}  # the fake "fd" of the target is our own namespace inode, as re-pinned
    await bed.fwd.set_flows(flows("203.0.113.1/32"))
    await bed.fwd.connect("target-1", "nsm-0", pinned(OWN_INODE, inode=OWN_INODE))
    created = list(bed.dp.created)
    bed.fwd.close()
    restarted = bed.new_forwarder()
    await restarted.start()
    assert restarted.bridge_addresses == ("172.16.1.1/24", "fd00:0:0:1::1/64")
    assert "target-1" in restarted.targets.links
    link = restarted.targets.links["target-1"]
    assert link.addresses == ("172.16.1.3/24", "fd00:0:0:1::3/64") and link.vips == ("203.0.113.1/32",)
    await restarted.set_lb_targets([lb_target("lb-1")])
    assert list(restarted.lb.links) == ["lb-1"] and bed.dp.created == created


async def test_a_restart_with_ipam_down_keeps_the_observed_lb_addresses_as_next_hops() -> None:
    bed = await started()
    bed.dp.ns["/run/netns/lb-1"] = {}
    await bed.fwd.set_lb_targets([lb_target("lb-1")])
    before = bed.dp.egress
    bed.ipam.down = True
    restarted = bed.new_forwarder()
    await restarted.start()
    await restarted.set_lb_targets([lb_target("lb-1")])
    assert bed.dp.egress == before and restarted.lb.links["lb-1"].addresses == ("172.16.1.2/24",
                                                                                "fd00:0:0:1::2/64")


async def test_leftover_lb_ports_of_replicas_no_longer_announced_are_removed() -> None:
    bed = await started(release_delay=0.0)
    bed.dp.ns["/run/netns/lb-1"] = {}
    await bed.fwd.set_lb_targets([lb_target("lb-1")])
    restarted = bed.new_forwarder()
    await restarted.start()
    await restarted.set_lb_targets([])
    assert not any(n.startswith("pl-") for n in bed.dp.ns[HOME])
    await restarted.tick()
    assert bed.ipam.released == ["lb:lb-1-src"]


async def test_a_connect_cancelled_while_the_kernel_makes_its_link_finishes_and_the_retry_takes_the_link_over(
        ) -> None:
    bed = await started()
    ns = bed.target_ns(7)
    made = asyncio.Event()
    create = bed.dp.create_link

    async def later(**kw: Any) -> int:
        await asyncio.sleep(0.05)
        return await create(**kw)

    async def slow_create(**kw: Any) -> int:
        # As on the kernel thread: the veth is made even though the caller stops waiting for it.
        made.set()
        return await asyncio.shield(asyncio.ensure_future(later(**kw)))
    bed.dp.create_link = slow_create  # type: ignore[method-assign]
    call = asyncio.ensure_future(bed.fwd.connect("target-1", "nsm-0", pinned(ns)))
    await made.wait()
    call.cancel()  # the server's 10 s cap, or the client's deadline
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.sleep(0.1)  # the kernel has made the veth by now
    info = await bed.fwd.connect("target-1", "nsm-0", pinned(ns))  # the retry
    assert info.addresses == ("172.16.1.2/24", "fd00:0:0:1::2/64")
    assert len(bed.dp.created) == 1 and list(bed.dp.ns[7]) == ["nsm-0"]
    assert set(bed.fwd.targets.links) == {"target-1"}
