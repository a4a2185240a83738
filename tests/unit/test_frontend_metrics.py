"""The frontend's metrics from fake states: session state and flaps from real BIRD 2.0.12 replies
(``golden/bird/replies``), every family's name, labels and values, the apply instruments, the settings,
what the frontend's monitor reports to its observer, and an unbindable port (logged, no crash)."""
from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import pathlib
import socket
from collections.abc import Sequence

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meridio.bird import birdc
from meridio.bird.birdconf import Bfd, BirdConfig, BirdGateway, GatewayProtocol
from meridio.common import log as logmod
from meridio.common import metrics as common
from meridio.common import settings as settingsmod
from meridio.frontend import app, metrics, service
from meridio.kernel import netlink

REPLIES = pathlib.Path(__file__).parent / "golden" / "bird" / "replies"
WHO = metrics.Identity("trench-a", "attr-a")
BFD = Bfd(50, 50, 3)
Up, Down = metrics.GatewaySessions(True, True), metrics.GatewaySessions(False, False)


def reply(name: str) -> birdc.Reply:
    return [e for e in birdc.ReplyParser().feed((REPLIES / name).read_bytes()) if isinstance(e, birdc.Reply)][1]


def gw(name: str, address: str, protocol: GatewayProtocol = GatewayProtocol.BGP, bfd: Bfd | None = BFD
       ) -> BirdGateway:
    return BirdGateway(name=name, address=ipaddress.ip_address(address), protocol=protocol, bfd=bfd)


GATEWAYS = (gw("gw-v4", "192.0.2.1"), gw("gw-v6", "2001:db8:e::1"),
            gw("gw-static", "192.0.2.1", GatewayProtocol.STATIC, None), gw("gw-absent", "192.0.2.77", bfd=None),
            gw("gw-gone", "192.0.2.99", bfd=BFD))


def samples(families: Sequence[common.Family], name: str) -> dict[tuple[str, ...], float]:
    """``{label values (without trench, attractor): value}`` of the family or sample ``name``."""
    out = {}
    for family in families:
        for s in family.samples:
            if s.name == name:
                assert (s.labels["trench"], s.labels["attractor"]) == WHO.values
                out[tuple(v for k, v in s.labels.items() if k not in ("trench", "attractor"))] = s.value
    return out


# --- sessions from BIRD's replies --------------------------------------------------------------

def test_sessions_come_from_show_protocols_all_and_show_bfd_sessions() -> None:
    got = metrics.sessions_from_bird(GATEWAYS, birdc.protocols(reply("show_protocols_all_nbr.txt")),
                                     birdc.bfd_sessions(reply("show_bfd_sessions.txt")), "ext0")
    assert got == {
        "gw-v4": metrics.GatewaySessions(True, True, birdc.RouteCounts(1, 1, 0)),
        "gw-v6": metrics.GatewaySessions(True, True, birdc.RouteCounts(1, 1, 1)),
        "gw-static": metrics.GatewaySessions(None, None, birdc.RouteCounts(1, 0, 1)),
        "gw-absent": metrics.GatewaySessions(False, None, birdc.RouteCounts()),
        "gw-gone": metrics.GatewaySessions(False, False, birdc.RouteCounts()),
    }


def test_a_bfd_session_on_another_interface_or_not_up_does_not_count() -> None:
    sessions = [birdc.BfdSession("NBR-BFD", "192.0.2.1", "other0", "Up", "", 0.1, 0.3),
                birdc.BfdSession("NBR-BFD", "2001:db8:e::1", "ext0", "Init", "", 0.1, 0.3)]
    got = metrics.sessions_from_bird(GATEWAYS[:2], [], sessions, "ext0")
    assert [s.bfd_up for s in got.values()] == [False, False]


# --- flaps -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("states", "flaps"), [
    ([Up], 0), ([Down], 0), ([Up, Down], 1), ([Up, Down, Down, Down], 1), ([Down, Up], 0),
    ([Up, Down, Up, Down], 2), ([Up, Up, Up], 0),
], ids=["up", "down-first", "up-down", "down-stays-down", "down-up", "twice", "stays-up"])
def test_each_up_to_down_transition_counts_one_flap(states: list[metrics.GatewaySessions], flaps: int) -> None:
    book = metrics.SessionBook()
    for state in states:
        book.observe({"gw": state})
    assert (book.bgp_flaps["gw"], book.bfd_flaps["gw"]) == (flaps, flaps)


def test_bgp_and_bfd_flaps_are_counted_apart() -> None:
    book = metrics.SessionBook()
    book.observe({"gw": Up})
    book.observe({"gw": metrics.GatewaySessions(False, True)})
    assert (book.bgp_flaps["gw"], book.bfd_flaps["gw"]) == (1, 0)


def test_losing_bird_is_one_flap_of_each_up_session_however_often_it_is_reported() -> None:
    book = metrics.SessionBook()
    book.observe({"gw": Up, "st": metrics.GatewaySessions(None, None, birdc.RouteCounts(1, 0, 1))})
    book.lost()
    book.lost()
    book.observe({"gw": Down, "st": metrics.GatewaySessions(None, None)})
    assert book.current == {"gw": Down, "st": metrics.GatewaySessions(None, None)}
    assert dict(book.bgp_flaps) == {"gw": 1} and dict(book.bfd_flaps) == {"gw": 1}


def test_a_gateway_leaving_the_configuration_takes_its_series_and_flaps() -> None:
    book = metrics.SessionBook()
    book.observe({"a": Up, "b": Up})
    book.observe({"a": Down, "b": Down})
    book.observe({"a": Down})
    assert list(book.current) == ["a"] and dict(book.bgp_flaps) == {"a": 1}


# --- families --------------------------------------------------------------------------------------

def test_the_session_families_carry_the_gateway_name_and_only_the_sessions_it_has() -> None:
    book = metrics.SessionBook()
    book.observe({"bgp-bfd": dataclasses.replace(Up, routes=birdc.RouteCounts(2, 3, 1)),
                  "bgp": metrics.GatewaySessions(True, None), "static": metrics.GatewaySessions(None, None)})
    book.observe({"bgp-bfd": Down, "bgp": metrics.GatewaySessions(True, None),
                  "static": metrics.GatewaySessions(None, None)})
    fams = metrics.session_families(WHO, book)
    assert [f.name for f in fams] == [
        "meridio_frontend_bgp_session_up", "meridio_frontend_bgp_session_flaps", "meridio_frontend_bfd_session_up",
        "meridio_frontend_bfd_session_flaps", "meridio_frontend_gateway_routes"]
    assert [f.type for f in fams] == ["gauge", "counter", "gauge", "counter", "gauge"]
    assert samples(fams, "meridio_frontend_bgp_session_up") == {("bgp",): 1.0, ("bgp-bfd",): 0.0}
    assert samples(fams, "meridio_frontend_bgp_session_flaps_total") == {("bgp",): 0.0, ("bgp-bfd",): 1.0}
    assert samples(fams, "meridio_frontend_bfd_session_up") == {("bgp-bfd",): 0.0}
    assert samples(fams, "meridio_frontend_bfd_session_flaps_total") == {("bgp-bfd",): 1.0}
    routes = samples(fams, "meridio_frontend_gateway_routes")
    assert len(routes) == 9 and set(routes.values()) == {0.0}
    assert {s.labels["kind"] for f in fams[4:] for s in f.samples} == set(metrics.ROUTE_KINDS)


def test_route_counts_are_labelled_by_kind() -> None:
    book = metrics.SessionBook()
    book.observe({"gw": dataclasses.replace(Up, routes=birdc.RouteCounts(2, 3, 1))})
    assert samples(metrics.session_families(WHO, book), "meridio_frontend_gateway_routes") == {
        ("gw", "imported"): 2.0, ("gw", "exported"): 3.0, ("gw", "preferred"): 1.0}


@pytest.mark.parametrize(("vips", "connectivity"), [(0, False), (2, True)], ids=["withdrawn", "announcing"])
def test_the_frontend_families_count_vips_and_show_connectivity(vips: int, connectivity: bool) -> None:
    fams = metrics.frontend_families(WHO, announced_vips=vips, connectivity=connectivity)
    assert samples(fams, "meridio_frontend_announced_vips") == {(): float(vips)}
    assert samples(fams, "meridio_frontend_gateway_connectivity") == {(): float(connectivity)}


BASE = BirdConfig(interface="ext0", router_id=ipaddress.IPv4Address("192.0.2.2"),
                  vips=(ipaddress.ip_network("203.0.113.10/32"), ipaddress.ip_network("2001:db8:f::10/128")))


@dataclasses.dataclass
class FakeFrontend:
    applied: BirdConfig = BASE
    announced: bool = False
    connectivity: bool = False


STATS = netlink.InterfaceStats("ext0", "02:00:00:00:00:01", 10, 1000, 0, 1, 20, 2000, 0, 0)


async def test_a_scrape_shows_the_state_the_interface_counters_and_the_applies(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fm = metrics.FrontendMetrics(WHO, "ext0")
    monkeypatch.setattr(metrics, "_interface_stats", lambda name: [STATS] if name == "ext0" else [])
    fm.gateways_seen(GATEWAYS[:1], birdc.protocols(reply("show_protocols_all_nbr.txt")),
                     birdc.bfd_sessions(reply("show_bfd_sessions.txt")))
    fm.bird_applied(service.ApplyResult.OK, 0.004)
    fm.bird_applied(service.ApplyResult.REFUSED, 0.002)
    fm.metrics.collect(lambda: fm.families(FakeFrontend(announced=True, connectivity=True)),
                       refresh=fm.refresh_interfaces)
    text = (await fm.metrics.render()).decode()
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for f in text_string_to_metric_families(text) for s in f.samples}
    gwl = (("attractor", "attr-a"), ("gateway", "gw-v4"), ("trench", "trench-a"))
    mine = (("attractor", "attr-a"), ("trench", "trench-a"))
    assert got[("meridio_frontend_bgp_session_up", gwl)] == 1.0
    assert got[("meridio_frontend_bfd_session_up", gwl)] == 1.0
    assert got[("meridio_frontend_gateway_routes", tuple(sorted((*gwl, ("kind", "exported")))))] == 1.0
    assert got[("meridio_frontend_announced_vips", mine)] == 2.0
    assert got[("meridio_frontend_gateway_connectivity", mine)] == 1.0
    assert got[("meridio_interface_receive_bytes_total",
                (("attractor", "attr-a"), ("interface", "ext0"), ("mac", "02:00:00:00:00:01"),
                 ("trench", "trench-a")))] == 1000.0
    for result, count in (("ok", 1.0), ("refused", 1.0), ("failed", 0.0)):
        assert got[("meridio_frontend_bird_applies_total", tuple(sorted((*mine, ("result", result)))))] == count, result
    assert got[("meridio_frontend_bird_apply_duration_seconds_count", mine)] == 2.0
    assert got[("meridio_frontend_bird_apply_duration_seconds_bucket", tuple(sorted((*mine, ("le", "0.005")))))] == 2.0


def test_vips_count_zero_while_the_frontend_withdraws_them() -> None:
    fm = metrics.FrontendMetrics(WHO, "ext0")
    fams = fm.families(FakeFrontend(announced=False, connectivity=True))
    assert samples(fams, "meridio_frontend_announced_vips") == {(): 0.0}


async def test_unreadable_interface_counters_leave_the_family_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(name: str) -> list[netlink.InterfaceStats]:
        raise OSError("netlink gone")

    fm = metrics.FrontendMetrics(WHO, "ext0")
    monkeypatch.setattr(metrics, "_interface_stats", fail)
    await fm.refresh_interfaces()
    assert samples(fm.families(FakeFrontend()), "meridio_interface_receive_bytes_total") == {}


# --- the endpoint and the settings ----------------------------------------------------------------

class Recorder(logmod.Logger):
    """A logger that records (message, fields) (a test double for log assertions)."""

    def __init__(self) -> None:
        super().__init__(logmod.null._logger)  # noqa: SLF001
        self.lines: list[tuple[str, dict[str, object]]] = []

    def bind(self, **fields: object) -> Recorder:
        return self

    def _log(self, level: int, message: str, fields: dict[str, object], exc_info: bool = False) -> None:
        self.lines.append((message, fields))


async def test_a_port_that_cannot_be_bound_is_logged_and_gives_no_endpoint() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        log = Recorder()
        fm = metrics.FrontendMetrics(WHO, "ext0", log=log)
        assert await fm.start(FakeFrontend(), port, "127.0.0.1") is None
    message, fields = log.lines[-1]
    assert message == "metricsNotServed"
    assert f"metrics port {port}" in str(fields["error"])


async def test_the_endpoint_serves_the_frontend_families() -> None:
    fm = metrics.FrontendMetrics(WHO, "lo")
    endpoint = await fm.start(FakeFrontend(connectivity=True), 0, "127.0.0.1")
    assert endpoint is not None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await reader.read()
        writer.close()
    finally:
        await endpoint.close()
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert b'meridio_frontend_gateway_connectivity{attractor="attr-a",trench="trench-a"} 1.0' in data


def test_metrics_are_off_by_default_on_meridios_port_2224() -> None:
    s = settingsmod.parse(app.Settings, app.ENV_PREFIX, [], {})
    assert (s.metrics_enabled, s.metrics_port) == (False, 2224)
    assert not app.options_from_settings(s, []).detailed_checks


def test_nfe_metrics_variables_enable_them_and_the_detailed_checks() -> None:
    s = settingsmod.parse(app.Settings, app.ENV_PREFIX, [],
                          {"NFE_METRICS_ENABLED": "true", "NFE_METRICS_PORT": "9224"})
    assert (s.metrics_enabled, s.metrics_port) == (True, 9224)
    assert app.options_from_settings(s, []).detailed_checks


# --- what the monitor reports --------------------------------------------------------------------

class FakeControl:
    def __init__(self) -> None:
        self.fail = False
        self.commands: list[tuple[str, bool]] = []

    async def show_protocols(self, pattern: str | None = None, *, details: bool = False,
                             timeout: float = 10.0) -> list[birdc.ProtocolInfo]:
        self.commands.append(("protocols", details))
        if self.fail:
            raise birdc.ProtocolError("garbled")
        return birdc.protocols(reply("show_protocols_all_nbr.txt"))

    async def show_bfd_sessions(self, timeout: float = 10.0) -> list[birdc.BfdSession]:
        self.commands.append(("bfd", False))
        return birdc.bfd_sessions(reply("show_bfd_sessions.txt"))

    async def close(self) -> None:
        pass


class FakeRules:
    def apply(self, vips: object) -> None:
        pass

    def clear(self) -> None:
        pass


async def test_the_monitor_reports_each_check_and_a_loss_after_too_many_failed_queries(
        tmp_path: pathlib.Path) -> None:
    fm = metrics.FrontendMetrics(WHO, "ext0")
    opts = service.Options(hostname="fe-0", base=dataclasses.replace(BASE, gateways=GATEWAYS[:1]), run_dir=tmp_path,
                           max_session_errors=1, detailed_checks=True)
    fe = service.Frontend(opts, rules=FakeRules(), observer=fm)
    fe._applied = opts.base
    fe._bird_up.set()
    control = FakeControl()
    fe.control = control  # type: ignore[assignment]
    await fe.check_gateways()
    # A BGP gateway with BFD: detailed checks ask for its BFD session too (plain checks would not).
    assert control.commands == [("protocols", True), ("bfd", False)]
    assert fm.book.current["gw-v4"].bgp_up is True and fm.book.current["gw-v4"].bfd_up is True
    control.fail = True
    await fe.check_gateways()
    assert fm.book.current["gw-v4"].bgp_up is True, "one failed query is not yet a loss"
    fe.control = control  # type: ignore[assignment]
    await fe.check_gateways()
    assert fm.book.current["gw-v4"] == metrics.GatewaySessions(False, False)
    assert fm.book.bgp_flaps["gw-v4"] == 1 and fm.book.bfd_flaps["gw-v4"] == 1


async def test_plain_checks_keep_the_short_queries(tmp_path: pathlib.Path) -> None:
    opts = service.Options(hostname="fe-0", base=dataclasses.replace(BASE, gateways=GATEWAYS[:1]), run_dir=tmp_path)
    fe = service.Frontend(opts, rules=FakeRules())
    fe._applied = opts.base
    fe._bird_up.set()
    control = FakeControl()
    fe.control = control  # type: ignore[assignment]
    await fe.check_gateways()
    assert control.commands == [("protocols", False)]

