"""Per-target traffic for the dashboard: LB pods' target hit counters (fake Prometheus text) → rates."""
from __future__ import annotations

import pytest

from meridio.cli.dashboard import traffic
from tests.unit import dashboard_samples as s

K7, K12 = traffic.TargetKey("t", "c", "s", "7"), traffic.TargetKey("t", "c", "s", "12")


def test_target_hits_reads_packets_and_bytes_per_target_and_ignores_other_metrics() -> None:
    hits = traffic.target_hits(s.metrics_text({"7": 10, "12": 3}, bytes_per_packet=64))
    assert hits == {K7: traffic.Hits(10, 640), K12: traffic.Hits(3, 192)}


def test_target_hits_of_text_that_is_not_prometheus_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        traffic.target_hits("meridio_lb_target_hit_packets_total{trench= 1\n")


def _sample(per_pod: dict[str, dict[str, float] | None]) -> dict[str, dict[traffic.TargetKey, traffic.Hits] | None]:
    return {pod: None if p is None else traffic.target_hits(s.metrics_text(p)) for pod, p in per_pod.items()}


def test_the_first_sample_gives_totals_and_no_rate_yet() -> None:
    rates = traffic.Meter().update(_sample({"lb-0": {"7": 10}, "lb-1": {"7": 5}}), now_s=100.0)
    assert rates == {K7: traffic.Rate(None, None, 15, 1500)}


def test_rates_are_summed_over_the_lb_pods_between_two_samples() -> None:
    meter = traffic.Meter()
    meter.update(_sample({"lb-0": {"7": 10, "12": 0}, "lb-1": {"7": 5, "12": 0}}), now_s=100.0)
    rates = meter.update(_sample({"lb-0": {"7": 30, "12": 4}, "lb-1": {"7": 25, "12": 0}}), now_s=102.0)
    assert rates[K7] == traffic.Rate(20.0, 2000.0, 55, 5500)  # (20 + 20) packets in 2 s
    assert rates[K12] == traffic.Rate(2.0, 200.0, 4, 400)


def test_a_counter_that_went_down_counts_from_zero_as_after_an_lb_restart() -> None:
    meter = traffic.Meter()
    meter.update(_sample({"lb-0": {"7": 1000}}), now_s=0.0)
    assert meter.update(_sample({"lb-0": {"7": 40}}), now_s=4.0)[K7].packets_per_s == 10.0


def test_a_pod_that_does_not_answer_is_left_out_and_starts_afresh_when_it_is_back() -> None:
    meter = traffic.Meter()
    meter.update(_sample({"lb-0": {"7": 10}, "lb-1": {"7": 10}}), now_s=0.0)
    rates = meter.update(_sample({"lb-0": {"7": 20}, "lb-1": None}), now_s=1.0)
    assert rates[K7] == traffic.Rate(10.0, 1000.0, 20, 2000)
    meter.update(_sample({"lb-0": {"7": 30}}), now_s=2.0)  # lb-1 gone: forgotten
    rates = meter.update(_sample({"lb-0": {"7": 40}, "lb-1": {"7": 500}}), now_s=3.0)
    assert rates[K7].packets_per_s == 10.0 and rates[K7].packets == 540


def test_a_target_that_appears_counts_from_zero() -> None:
    meter = traffic.Meter()
    meter.update(_sample({"lb-0": {"7": 10}}), now_s=0.0)
    assert meter.update(_sample({"lb-0": {"7": 10, "12": 6}}), now_s=2.0)[K12].packets_per_s == 3.0
