"""The load balancer's metric families from plain state, and the bucket moves a table change counts."""
from __future__ import annotations

from typing import Any

from meridio.loadbalancer import datapath, maglev, plan, ruleset
from meridio.loadbalancer.datapath import ApplyResult, CounterValue
from meridio.loadbalancer.metrics import LbMetrics, families
from meridio.loadbalancer.reconciler import Desired, Report, StreamInput
from tests.unit import lb_samples as samples

DESIRED = Desired(streams=(StreamInput("stream-a", 3, (samples.target(1), samples.target(2))),
                           StreamInput("stream-b", 3, (samples.target(3),))),
                  flows=samples.flows())
REPORT = Report(active={"stream-a": (1, 2), "stream-b": ()}, pending={"stream-a": (), "stream-b": (3,)},
                rejected_flows=(), apply=ApplyResult(10, 0.01, {"s-stream-a": 7}))


def samples_of(fams: list[Any]) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {s.name: [(x.labels, x.value) for x in f.samples if x.name == s.name]
            for f in fams for s in f.samples}


def test_counters_become_flow_matches_and_target_hits_by_identifier() -> None:
    counters = {ruleset.flow_counter("stream-a", "web"): CounterValue(40, 4000),
                ruleset.target_counter(5001): CounterValue(11, 1100), ruleset.target_counter(5002): CounterValue(29, 2900)}
    fams = families(trench="t", conduit="c", desired=DESIRED, report=REPORT, offsets={"stream-a": 5000, "stream-b": 5003},
                    counters=counters, moved={}, moved_total={}, available=True)
    got = samples_of(fams)
    assert got["meridio_lb_flow_matches_total"] == [
        ({"trench": "t", "conduit": "c", "stream": "stream-a", "flow": "web"}, 40),
        ({"trench": "t", "conduit": "c", "stream": "stream-b", "flow": "sctp"}, 0),
        ({"trench": "t", "conduit": "c", "stream": "stream-b", "flow": "special"}, 0)]
    assert got["meridio_lb_target_hit_packets_total"] == [
        ({"trench": "t", "conduit": "c", "stream": "stream-a", "identifier": "1"}, 11),
        ({"trench": "t", "conduit": "c", "stream": "stream-a", "identifier": "2"}, 29)]
    assert [v for _, v in got["meridio_lb_target_hit_bytes_total"]] == [1100, 2900]
    assert [v for _, v in got["meridio_lb_stream_targets"]] == [2, 0]
    assert [v for _, v in got["meridio_lb_stream_pending_targets"]] == [0, 1]
    assert [v for _, v in got["meridio_lb_maglev_table_size"]] == [maglev.table_size(3)] * 2
    assert got["meridio_lb_available"] == [({"trench": "t", "conduit": "c"}, 1.0)]


def test_no_state_yet_gives_empty_families_not_an_error() -> None:
    fams = families(trench="t", conduit="c", desired=None, report=None, offsets={}, counters={}, moved={},
                    moved_total={}, available=False)
    got = samples_of(fams)
    assert "meridio_lb_target_hit_packets_total" not in got
    assert got["meridio_lb_available"] == [({"trench": "t", "conduit": "c"}, 0.0)]


def test_moved_buckets_count_exactly_the_buckets_that_point_elsewhere() -> None:
    before = ruleset.render(samples.config(targets_a=(1, 2)))
    after = ruleset.render(samples.config(targets_a=(1, 2, 3)))
    moved = datapath.moved_buckets(plan.Installed.of(before), after)
    m = maglev.table_size(3)
    expected = len(maglev.changed_buckets(maglev.populate([1, 2], m, 3), maglev.populate([1, 2, 3], m, 3)))
    assert moved == {"s-stream-a": expected}
    assert 0 < expected < m
    assert datapath.moved_buckets(plan.Installed.of(after), after) == {}
    assert datapath.moved_buckets(plan.Installed(), after)["s-stream-a"] == m


def test_reconcile_hook_keeps_the_last_move_and_the_total() -> None:
    lbm = LbMetrics(trench="t", conduit="c", state=lambda: (DESIRED, REPORT, True), offsets=lambda: {},
                    counters=lambda: {}, interfaces=lambda: [], interface_prefix="c")
    lbm.reconciled(REPORT, 0.02)
    lbm.reconciled(Report({}, {}, (), ApplyResult(3, 0.001, {"s-stream-a": 2})), 0.01)
    got = samples_of(lbm._families())
    assert dict((d["stream"], v) for d, v in got["meridio_lb_maglev_last_change_buckets_moved"]) == {"stream-a": 2, "stream-b": 0}
    assert dict((d["stream"], v) for d, v in got["meridio_lb_maglev_buckets_moved_total"]) == {
        "stream-a": 9, "stream-b": 0}
    text = lbm.metrics.registry
    labels = {"trench": "t", "conduit": "c"}
    assert text.get_sample_value("meridio_lb_reconcile_duration_seconds_count", labels) == 2
    assert text.get_sample_value("meridio_lb_nft_apply_duration_seconds_count", labels) == 2
