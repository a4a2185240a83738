"""Fuzzing every servicer's requests (hypothesis): no crash, no hang, only INVALID_ARGUMENT-class errors, and
nothing stored for a rejected request.

What is real: grpc.aio servers made by ``grpcutil.create_server`` on unix sockets, the NSP servicers
(TargetRegistry, ConfigurationManager) and IPAM's servicer over their real cores (IPAM's sqlite in
memory). TAPA's and the proxy's servicers need a pod's namespace and a forwarder, so for them the
parsers their servicers call first (``tapa.refs``, ``proxy.names``) are fuzzed directly.
"""
from __future__ import annotations

import asyncio
import ipaddress
import pathlib
import re
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meridio.api import model as m
from meridio.api.pb.ambassador.v1 import tap_pb2
from meridio.api.pb.ipam.v1 import ipam_pb2, ipam_pb2_grpc
from meridio.api.pb.nsp.v1 import configurationmanager_pb2_grpc, model_pb2, targetregistry_pb2, targetregistry_pb2_grpc
from meridio.common import grpcutil
from meridio.common.clock import FakeClock, SystemClock
from meridio.ipam import servicer as ipamservicer
from meridio.ipam import store as ipamstore
from meridio.ipam import tree
from meridio.ipam.registry import Registry as IpamRegistry
from meridio.nsp import config, registry, service, targets
from meridio.proxy import names
from meridio.tapa import refs

TA = m.Trench("trench-a")
C1 = m.Conduit("conduit-a-1", TA)
CONFIG = m.Configuration(TA, (C1,), (m.Stream("stream-a-i", C1, 100),))
REFUSED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
           grpc.StatusCode.RESOURCE_EXHAUSTED}
"""The INVALID_ARGUMENT class: bad input, or input naming what is not (yet) configured or has no room."""
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
_DNS = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")

names_st = st.one_of(st.sampled_from(["", "trench-a", "conduit-a-1", "stream-a-i", "evil", "Bad_Name", "a\n"]),
                     st.text(max_size=20), st.just("n" * 300), st.just("x" * 40_000))
ips_st = st.lists(st.one_of(st.sampled_from(["172.16.1.6/24", "fd00::6/64", "not-an-ip", "", "10.0.0.1/99",
                                             "fe-1"]), st.text(max_size=30), st.just("1" * 20_000)), max_size=40)
enum_st = st.integers(min_value=-3, max_value=9)


def trench_pb(name: str) -> model_pb2.Trench:
    return model_pb2.Trench(name=name)


@st.composite
def stream_st(draw: Callable[..., Any]) -> model_pb2.Stream | None:
    if not draw(st.booleans()):
        return None
    s = model_pb2.Stream(name=draw(names_st), maxTargets=draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        s.conduit.name = draw(names_st)
        if draw(st.booleans()):
            s.conduit.trench.CopyFrom(trench_pb(draw(names_st)))
    return s


@st.composite
def target_st(draw: Callable[..., Any]) -> targetregistry_pb2.Target:
    t = targetregistry_pb2.Target(ips=draw(ips_st), status=draw(enum_st), type=draw(enum_st),  # type: ignore[arg-type]
                                  context=draw(st.dictionaries(names_st, names_st, max_size=20)))
    stream = draw(stream_st())
    if stream is not None:
        t.stream.CopyFrom(stream)
    return t


class Loop:
    """One event loop for a whole hypothesis test (hypothesis calls the test body synchronously)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        # The calls are made outside the loop (their objects created before run_until_complete); grpc.aio
        # then looks for the thread's current loop, which an earlier test may have closed.
        asyncio.set_event_loop(self.loop)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        asyncio.set_event_loop(None)
        self.loop.close()


async def start(tmp_path: pathlib.Path, add: Callable[[grpc.aio.Server], None]) -> tuple[grpc.aio.Server, str]:
    server = grpcutil.create_server()
    add(server)
    address = f"unix:{tmp_path}/fuzz-{id(add)}.sock"
    grpcutil.add_listener(server, address)
    await server.start()
    return server, address


async def outcome(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        assert len(exc.details() or "") < 400, "an error message echoes the input"
        return exc.code()
    return grpc.StatusCode.OK


async def first_of_watch(call: Any) -> grpc.StatusCode:
    try:
        got = await call.read()
        if got is grpc.aio.EOF:
            return await call.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as exc:
        assert len(exc.details() or "") < 400, "an error message echoes the input"
        return exc.code()
    finally:
        call.cancel()


def test_nsp_target_registry_and_configuration_manager(tmp_path: pathlib.Path) -> None:
    lp = Loop()
    manager = config.ConfigurationManager(CONFIG)
    owner = targets.Targets(registry.Registry(clock=SystemClock()), None)
    server, address = lp.run(start(tmp_path, lambda s: service.add_to_server(s, manager, owner)))

    async def channel() -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(address)
    ch = lp.run(channel())
    reg = targetregistry_pb2_grpc.TargetRegistryStub(ch)
    cm = configurationmanager_pb2_grpc.ConfigurationManagerStub(ch)

    @FUZZ
    @given(target_st(), stream_st())
    def check(t: targetregistry_pb2.Target, s: model_pb2.Stream | None) -> None:
        before = owner.targets()
        code = lp.run(outcome(reg.Register(t, timeout=5)))
        assert code in REFUSED | {grpc.StatusCode.OK}
        if code == grpc.StatusCode.OK:
            lp.run(outcome(reg.Unregister(t, timeout=5)))
        else:
            assert owner.targets() == before, "a rejected registration stored something"
        assert lp.run(outcome(reg.Unregister(t, timeout=5))) in REFUSED | {grpc.StatusCode.OK}
        assert lp.run(first_of_watch(reg.Watch(t, timeout=5))) in REFUSED | {grpc.StatusCode.OK}
        assert lp.run(first_of_watch(cm.WatchStream(s or model_pb2.Stream(), timeout=5))) in REFUSED | {
            grpc.StatusCode.OK}
        assert owner.targets() == before

    try:
        check()

        async def settled() -> None:  # a cancelled watch is unsubscribed by the server a moment later
            for _ in range(100):
                if owner.watcher_count == 0 and manager.watcher_count == 0:
                    return
                await asyncio.sleep(0.05)
        lp.run(settled())
        assert owner.watcher_count == 0 and manager.watcher_count == 0
    finally:
        lp.run(ch.close())
        manager.close()
        owner.close()
        lp.run(server.stop(0))
        lp.close()


@st.composite
def child_st(draw: Callable[..., Any]) -> ipam_pb2.Child:
    # A valid name of an unknown conduit would make Allocate wait for the NSP: keep conduits either
    # the configured one or no valid name.
    conduit = draw(st.one_of(st.just("conduit-a"), names_st.filter(lambda n: not _DNS.match(n))))
    c = ipam_pb2.Child(name=draw(names_st), subnet=ipam_pb2.Subnet(node=draw(names_st), ipFamily=draw(enum_st)))  # type: ignore[arg-type]
    if draw(st.booleans()):
        c.subnet.conduit.name = conduit
        if draw(st.booleans()):
            c.subnet.conduit.trench.CopyFrom(trench_pb(draw(st.one_of(st.just("trench-a"), names_st))))
    return c


def test_ipam_allocate_and_release(tmp_path: pathlib.Path) -> None:
    lp = Loop()
    layouts = [tree.Layout(tree.Family.IPV4, ipaddress.ip_network("172.16.0.0/16"), 20, 24)]
    reg = IpamRegistry(ipamstore.Store.open(":memory:"), trench="trench-a", layouts=layouts, clock=FakeClock(),
                       nodes=["node-1", "node-2"])
    reg.set_conduits(["conduit-a"])
    server, address = lp.run(start(tmp_path, lambda s: ipam_pb2_grpc.add_IpamServicer_to_server(
        ipamservicer.IpamServicer(reg), s)))

    async def channel() -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(address)
    ch = lp.run(channel())
    stub = ipam_pb2_grpc.IpamStub(ch)

    @FUZZ
    @given(child_st())
    def check(c: ipam_pb2.Child) -> None:
        before = reg.entries()
        code = lp.run(outcome(stub.Allocate(c, timeout=5)))
        assert code in REFUSED | {grpc.StatusCode.OK}
        if code != grpc.StatusCode.OK:
            assert reg.entries() == before, "a rejected allocation stored something"
        assert lp.run(outcome(stub.Release(c, timeout=5))) in REFUSED | {grpc.StatusCode.OK}

    try:
        check()
    finally:
        lp.run(ch.close())
        lp.run(server.stop(0))
        reg.close()
        lp.close()


@FUZZ
@given(stream_st())
def test_tapa_open_close_and_watch_requests_parse_or_are_invalid(s: model_pb2.Stream | None) -> None:
    request = tap_pb2.Stream()
    if s is not None:
        request.name = s.name
        if s.HasField("conduit"):
            request.conduit.name = s.conduit.name
            if s.conduit.HasField("trench"):
                request.conduit.trench.name = s.conduit.trench.name
    try:
        ref = refs.ref_from_pb(request)
        assert all(_DNS.match(n) and len(n) <= 253 for n in (ref.trench, ref.conduit, ref.stream))
    except refs.InvalidRequest as exc:
        assert len(str(exc)) < 400
    refs.filter_from_pb(request)  # a filter never fails


@FUZZ
@given(names_st)
def test_proxy_link_request_names_are_checked_or_refused(value: str) -> None:
    for check in (names.check_target_id, names.check_interface_name):
        try:
            assert check(value) == value
        except names.InvalidName as exc:
            assert len(str(exc)) < 400
