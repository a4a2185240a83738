"""Readiness from one status snapshot (pure): what ``meridio up`` waits for, and why it is not ready.

``_Ctl`` is a test double of the controller: the environment, the desired workloads and the pods it
runs, built from the real default environment and resources, with no process or kernel behind it.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from meridio.api import resources
from meridio.runtime import reconcile as rc
from meridio.runtime.local import environment as envmod
from meridio.runtime.local import pods, readiness, supervisor, topology
from meridio.runtime.local import protocol as proto
from meridio.runtime.local.layout import Naming, StateLayout

ENV = envmod.load_default()
OBJS = resources.load_file(envmod.EXAMPLES_E2E / "init-trench-b.yaml")


class _Ctl:
    def __init__(self) -> None:
        self.env = ENV
        self.naming = Naming(ENV.prefix)
        self.desired = rc.desired(OBJS, nodes=ENV.nodes, deployments=[rc.TargetDeployment("target-b", 1, (
            "trench-b/conduit-b-1/stream-b-i",))])
        builder = pods.PodBuilder(ENV, StateLayout(pathlib.Path("/state")), self.naming)
        net = ENV.network("vlan-200")
        self.pods = {}
        for i, w in enumerate(self.desired.workloads):
            ext = topology.external_link(self.naming, net, self.naming.pod_ns(w.name), "ext-vlan0",  # type: ignore[arg-type]
                                         topology.fe_address(net, i + 1)) if w.kind is rc.Kind.FRONTEND_LB else None  # type: ignore[arg-type]
            self.pods[w.name] = builder.build(w, external=ext)
        self.awaiting_streams = {"target-b-0": {"trench-b/conduit-b-1/stream-b-i"}}
        self.blocked: dict[str, str] = {}

    def resources(self) -> list[resources.Resource]:
        return OBJS


def _fe_addresses(ctl: _Ctl) -> list[str]:
    return [a.split("/")[0] for p in ctl.pods.values() if p.external for a in p.external.addresses]


def _typed(doc: dict[str, Any]) -> proto.Snapshot:
    """The snapshot in its wire form (what ``meridio status -o json`` prints), decoded as the CLI does."""
    return proto.decode(proto.Snapshot, doc)


def _snapshot(ctl: _Ctl, **change: Any) -> dict[str, Any]:
    fes = _fe_addresses(ctl)
    snap: dict[str, Any] = {
        "environment": ENV.name, "prefix": ENV.prefix, "stateDir": "/state",
        "pods": [{"name": n, "kind": p.kind.value, "node": "", "trench": "trench-b", "netns": p.netns,
                  "state": "Running"} for n, p in ctl.pods.items()], "processes": [], "opening": [],
        "targets": {"target-b-0": [{"status": "OPEN", "stream": "stream-b-i", "conduit": "conduit-b-1",
                                    "trench": "trench-b"}]},
        "streams": {"trench-b": [{"conduit": "conduit-b-1", "stream": "stream-b-i", "status": "ENABLED",
                                  "identifier": "7", "ips": []}]},
        "routers": [{"name": r.name, "trench": r.trench, "network": r.network, "routes": {}, "sessions": []}
                    for r in ENV.routers]}
    gw = next(r for r in snap["routers"] if r["name"] == "gw-b1")
    gw["sessions"] = [{"name": f"FE{i}", "neighbor": a, "info": "Established", "state": "up", "bfd": "Up"}
                      for i, a in enumerate(fes)]
    gw["routes"] = {"203.0.113.1/32": sorted(a for a in fes if ":" not in a),
                    "2001:db8:a1::1/128": sorted(a for a in fes if ":" in a)}
    snap.update(change)
    return snap


def test_everything_running_peered_announced_and_open_is_ready() -> None:
    ctl = _Ctl()
    assert readiness.not_ready(ctl, _typed(_snapshot(ctl))) == []


def test_a_stream_opened_at_start_is_awaited_until_open_then_forgotten() -> None:
    ctl = _Ctl()
    closed = {"target-b-0": [{"status": "UNDEFINED", "stream": "stream-b-i", "conduit": "conduit-b-1",
                              "trench": "trench-b"}]}
    readiness.forget_opened(ctl, _typed(_snapshot(ctl, targets=closed)))
    assert ctl.awaiting_streams == {"target-b-0": {"trench-b/conduit-b-1/stream-b-i"}}  # not OPEN yet
    readiness.forget_opened(ctl, _typed(_snapshot(ctl)))
    assert ctl.awaiting_streams == {}
    # closed later by the user: not a readiness matter any more
    assert readiness.not_ready(ctl, _typed(_snapshot(ctl, targets=closed))) == []


def test_a_stream_opened_at_start_must_be_open_not_just_listed() -> None:
    ctl = _Ctl()
    early = {"target-b-0": [{"status": "UNDEFINED", "stream": "stream-b-i", "conduit": "conduit-b-1",
                             "trench": "trench-b"}]}
    assert readiness.not_ready(ctl, _typed(_snapshot(ctl, targets=early))) == ["pod target-b-0: stream stream-b-i UNDEFINED"]
    assert readiness.not_ready(ctl, _typed(_snapshot(ctl, targets={"target-b-0": []}))) == [
        "pod target-b-0: stream stream-b-i not listed"]


def test_an_nsp_that_does_not_answer_is_not_ready() -> None:
    ctl = _Ctl()
    assert "trench trench-b: NSP not answering" in readiness.not_ready(ctl, _typed(_snapshot(ctl, streams={"trench-b": None})))


def test_a_frontend_without_its_bgp_session_is_named() -> None:
    ctl = _Ctl()
    snap = _snapshot(ctl)
    gw = next(r for r in snap["routers"] if r["name"] == "gw-b1")
    missing = gw["sessions"].pop(0)
    reasons = readiness.not_ready(ctl, _typed(snap))
    assert len(reasons) == 1 and reasons[0].startswith("router gw-b1: no BGP session with stateless-lb-frontend-")
    assert missing["neighbor"] in reasons[0]


def test_a_vip_not_announced_by_every_replica_is_not_ready_while_its_stream_has_targets() -> None:
    ctl = _Ctl()
    snap = _snapshot(ctl)
    gw = next(r for r in snap["routers"] if r["name"] == "gw-b1")
    gw["routes"]["203.0.113.1/32"] = gw["routes"]["203.0.113.1/32"][:1]
    assert readiness.not_ready(ctl, _typed(snap)) == ["router gw-b1: 203.0.113.1/32 (attractor-b-1) not announced by every FE (1/2)"]
    # without targets Meridio withdraws the VIPs: nothing to wait for
    assert readiness.not_ready(ctl, _typed(_snapshot(ctl, streams={"trench-b": []}) | {"routers": snap["routers"]})) == []


def test_a_pending_stream_and_a_silent_tapa_are_not_ready() -> None:
    ctl = _Ctl()
    ctl.awaiting_streams = {}
    pending = {"target-b-0": [{"status": "PENDING", "stream": "stream-b-i", "conduit": "conduit-b-1",
                               "trench": "trench-b"}]}
    assert readiness.not_ready(ctl, _typed(_snapshot(ctl, targets=pending))) == ["pod target-b-0: stream stream-b-i PENDING"]
    assert readiness.not_ready(ctl, _typed(_snapshot(ctl, targets={"target-b-0": None}))) == [
        "pod target-b-0: TAPA not answering"]


class _Sup:
    def __init__(self, statuses: list[supervisor.ProcessStatus]) -> None:
        self._statuses = statuses

    def status(self) -> list[supervisor.ProcessStatus]:
        return self._statuses


def _statuses(ctl: _Ctl, **failed_ipam: Any) -> list[supervisor.ProcessStatus]:
    running = supervisor.ProcessStatus("", "", "", 100, supervisor.ProcessState.RUNNING, 0, None, 0.0, "")
    return [dataclasses.replace(running, name=p.name, pod=p.pod, component=p.component, log_path=str(p.log_path),
                                **(failed_ipam if p.component == "ipam" else {}))
            for spec in ctl.pods.values() for p in spec.processes]


def test_a_pod_whose_process_keeps_exiting_at_start_is_failed_with_its_last_line() -> None:
    ctl = _Ctl()
    line = "meridio run ipam: IPAM registry /run/ipam/registry.db is corrupt; to recover, restore a backup of it"
    ctl.sup = _Sup(_statuses(ctl, state=supervisor.ProcessState.BACKOFF, failed=True, quick_exits=5,  # type: ignore[attr-defined]
                             last_error=line, restarts=5))
    pods_ = {p.name: p for p in readiness._pods(ctl)}  # type: ignore[arg-type]
    [failed] = [p for p in pods_.values() if p.state == "Failed"]
    assert "ipam exited 5 times in a row soon after starting" in failed.reason and failed.reason.endswith(line)
    assert [c.last_error for c in failed.containers if c.failed] == [line]
    assert all(p.state == "Running" for p in pods_.values() if p is not failed)
    snap = _typed(_snapshot(ctl, pods=proto.encode(list(pods_.values()))))
    assert [r for r in readiness.not_ready(ctl, snap) if "Failed" in r] == [f"pod {failed.name}: Failed ({failed.reason})"]


def test_a_pod_whose_processes_run_is_running_with_no_reason() -> None:
    ctl = _Ctl()
    ctl.sup = _Sup(_statuses(ctl))  # type: ignore[attr-defined]
    assert {(p.state, p.reason) for p in readiness._pods(ctl)} == {("Running", "")}  # type: ignore[arg-type]
