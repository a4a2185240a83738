"""The runtime daemon's API (pure): every request and reply survives the wire; bad requests are named.

The daemon's server is run here against a controller double over a real unix socket, so the client's
typed call, the JSON lines and the dispatch table are exercised together.
"""
from __future__ import annotations

import asyncio
import json
import pathlib
from typing import Any

import pytest

from meridio.common import log as logmod
from meridio.runtime.local import client, daemon
from meridio.runtime.local import protocol as proto
from meridio.runtime.local.controller import ControllerError
from meridio.runtime.local.layout import StateLayout

SNAPSHOT = proto.Snapshot(
    environment="lab", prefix="mlab", state_dir="/var/lib/meridio/lab",
    processes=(proto.Process(name="nsp-a/nsp", pod="nsp-a", component="nsp", pid=12, state="running", restarts=1,
                             exit_code=None, since=1.5, log_path="/x/nsp.log"),),
    pods=(proto.Pod(name="target-a-0", kind="target", node="node-1", trench="trench-a", netns="mlab-pod-t",
                    state="NotReady", reason="", containers=(proto.Container("tapa", "running", 0),)),),
    routers=(proto.Router(name="gw-a1", trench="trench-a", network="vlan-100",
                          sessions=(proto.Session("FE1", "169.254.100.1", "up", "Established", "Up"),),
                          routes={"203.0.113.1/32": ("169.254.100.1", "169.254.100.2")}),),
    targets={"target-a-0": (proto.StreamStatus("OPEN", "stream-a-i", "conduit-a-1", "trench-a"),), "target-a-1": None},
    streams={"trench-a": (proto.RegisteredTarget("stream-a-i", "conduit-a-1", "7", "ENABLED", ("172.16.1.2",)),),
             "trench-b": None},
    problems=("Vip/v: spec.address: bad",), opening=("target-a-1",), not_ready=("pod target-a-1: TAPA not answering",))

REQUESTS: list[proto.Request[Any]] = [
    proto.Ping(), proto.Up(timeout=12.5), proto.Wait(), proto.Apply(text="kind: Trench", source="a.yaml"),
    proto.Delete(refs=(("Trench", "default", "trench-a"),)), proto.Delete(text="x", source="f"),
    proto.Scale(deployment="target-a", replicas=3), proto.Status(), proto.Resources(), proto.Down(),
]


def test_every_op_has_one_request_type() -> None:
    assert set(proto.REQUESTS) == set(proto.Op)
    assert all(proto.REQUESTS[op].op is op for op in proto.Op)


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_a_request_survives_json(request_: proto.Request[Any]) -> None:
    wire = json.loads(json.dumps(proto.encode(request_)))
    assert wire["op"] == request_.op.value
    assert proto.decode_request(wire) == request_


def test_the_snapshot_survives_json_with_the_keys_status_has_always_printed() -> None:
    wire = json.loads(json.dumps(proto.encode(SNAPSHOT)))
    assert {"stateDir", "notReady", "processes", "pods", "routers", "targets", "streams"} <= set(wire)
    assert wire["processes"][0]["exit_code"] is None and wire["processes"][0]["log_path"] == "/x/nsp.log"
    assert wire["routers"][0]["routes"] == {"203.0.113.1/32": ["169.254.100.1", "169.254.100.2"]}
    assert proto.decode(proto.Snapshot, wire) == SNAPSHOT


@pytest.mark.parametrize(("wire", "message"), [
    ([], "a request is one JSON object"),
    ({"op": "reboot"}, "unknown op 'reboot'"),
    ({}, "unknown op None"),
    ({"op": "apply"}, "Apply: text is required"),
    ({"op": "scale", "deployment": "d", "replicas": "3"}, "Scale.replicas: expected int"),
    ({"op": "scale", "deployment": "d", "replicas": True}, "Scale.replicas: expected int"),
    ({"op": "delete", "refs": [["Trench", "default"]]}, "Delete.refs[0]: expected 3 items"),
    ({"op": "up", "timeout": "soon"}, "Up.timeout: expected a number"),
])
def test_a_malformed_request_names_the_field(wire: Any, message: str) -> None:
    with pytest.raises(proto.ProtocolError) as err:
        proto.decode_request(wire)
    assert str(err.value) == message


class _Ctl:
    """A controller double: records calls, answers as the controller would."""

    def __init__(self, layout: StateLayout) -> None:
        self.layout = layout
        self.env = type("Env", (), {"name": "lab"})()
        self.calls: list[tuple[str, Any]] = []

    async def apply(self, text: str, source: str) -> Any:
        self.calls.append(("apply", (text, source)))
        return type("Result", (), {"lines": ("trench.meridio.nordix.org/trench-a created",)})()

    async def scale(self, deployment: str, replicas: int) -> str:
        if replicas > 64:
            raise ControllerError(f"--replicas: {replicas} must be between 0 and 64")
        return f"deployment.apps/{deployment} scaled"


async def test_the_client_gets_typed_replies_and_errors_over_the_socket(tmp_path: pathlib.Path) -> None:
    layout = StateLayout(tmp_path)
    ctl = _Ctl(layout)
    server = daemon.Server(ctl, logmod.null)  # type: ignore[arg-type]
    unix = await asyncio.start_unix_server(server.handle, path=str(layout.control_socket))
    try:
        pong = await asyncio.to_thread(client.request, layout, proto.Ping())
        assert isinstance(pong, proto.Pong) and pong.environment == "lab"
        lines = await asyncio.to_thread(client.request, layout, proto.Apply(text="t", source="s.yaml"))
        assert lines == proto.Lines(("trench.meridio.nordix.org/trench-a created",)) and ctl.calls == [("apply", ("t", "s.yaml"))]
        scaled = await asyncio.to_thread(client.request, layout, proto.Scale(deployment="target-a", replicas=2))
        assert scaled == proto.Scaled("deployment.apps/target-a scaled")
        with pytest.raises(client.RequestFailed, match="must be between 0 and 64"):
            await asyncio.to_thread(client.request, layout, proto.Scale(deployment="target-a", replicas=65))
    finally:
        unix.close()
        await unix.wait_closed()
