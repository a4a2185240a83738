"""The shared metrics endpoint: exposition of instruments and collectors, HTTP handling, bounds."""
from __future__ import annotations

import asyncio

import pytest

from meridio.common import metrics


async def _get(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


def test_families_carry_the_prefix_labels_and_samples() -> None:
    g = metrics.gauge("stream_targets", "targets of a stream", ["trench", "stream"], [(("a", "s1"), 3)])
    c = metrics.counter("gateway_flaps", "flaps", ["gateway"], [(("gw1",), 2)])
    assert g.name == "meridio_stream_targets"
    assert [(s.labels, s.value) for s in g.samples] == [({"trench": "a", "stream": "s1"}, 3)]
    assert c.name == "meridio_gateway_flaps"
    assert [(s.name, s.value) for s in c.samples] == [("meridio_gateway_flaps_total", 2)]


async def test_scrape_returns_collectors_after_refresh_and_instruments() -> None:
    m = metrics.Metrics()
    state = {"n": 1}

    async def refresh() -> None:
        state["n"] += 1

    m.collect(lambda: [metrics.gauge("things", "things now", [], [((), state["n"])])], refresh=refresh)
    h = m.histogram("apply_duration_seconds", "apply time")
    with metrics.timed(h):
        pass
    endpoint = await m.serve(0, "127.0.0.1")
    try:
        reply = await _get(endpoint.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        await endpoint.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"meridio_things 2.0" in body
    assert b"meridio_apply_duration_seconds_count 1.0" in body
    assert b"text/plain; version=0.0.4" in head


@pytest.mark.parametrize("request_, status", [
    (b"GET / HTTP/1.1\r\n\r\n", b"404"),
    (b"POST /metrics HTTP/1.1\r\n\r\n", b"405"),
    (b"nonsense\r\n\r\n", b"405"),
])
async def test_other_requests_are_refused(request_: bytes, status: bytes) -> None:
    endpoint = await metrics.Metrics().serve(0, "127.0.0.1")
    try:
        reply = await _get(endpoint.port, request_)
    finally:
        await endpoint.close()
    assert reply.split()[1] == status


async def test_oversized_request_is_dropped_unanswered() -> None:
    endpoint = await metrics.Metrics().serve(0, "127.0.0.1")
    try:
        reply = await _get(endpoint.port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
    finally:
        await endpoint.close()
    assert reply == b""


async def test_bad_port_names_the_setting() -> None:
    with pytest.raises(metrics.MetricsError, match="metrics port: must be 1-65535"):
        await metrics.Metrics().serve(70000)


def test_interface_families_label_each_interface() -> None:
    import dataclasses

    @dataclasses.dataclass
    class St:
        name: str = "eth1"
        mac: str = "02:00:00:00:00:01"
        rx_packets: int = 10
        rx_bytes: int = 1000
        rx_errors: int = 0
        rx_dropped: int = 1
        tx_packets: int = 20
        tx_bytes: int = 2000
        tx_errors: int = 0
        tx_dropped: int = 0

    fams = {f.name: f for f in metrics.interface_families([St()], ["trench"], ["a"])}
    assert len(fams) == 8
    [sample] = fams["meridio_interface_transmit_bytes"].samples
    assert sample.name == "meridio_interface_transmit_bytes_total"
    assert sample.labels == {"trench": "a", "interface": "eth1", "mac": "02:00:00:00:00:01"}
    assert sample.value == 2000
