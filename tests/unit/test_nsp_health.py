"""common/health.py probe model and common/grpcutil.py helpers (pure parts; sockets are in tests/integration)."""
from __future__ import annotations

import grpc
import pytest

from meridio.common import grpcutil, health
from meridio.common.health import LIVENESS, READINESS, STARTUP, ProbeModel, Status
from meridio.common.retry import PermanentError, TemporaryError
from meridio.nsp import registry, store


def lb_model() -> ProbeModel:
    return ProbeModel({READINESS: [health.NSP_CLI, health.EGRESS, health.STREAM], LIVENESS: [health.NSM_ENDPOINT]})


def test_registered_probes_and_sub_services_start_not_serving_and_the_overall_service_serves() -> None:
    model = lb_model()
    assert model.status(READINESS) == model.status(health.NSP_CLI) == Status.NOT_SERVING
    assert model.status("") == Status.SERVING
    assert model.status(STARTUP) is None


def test_a_probe_serves_only_when_all_its_sub_services_serve() -> None:
    model = lb_model()
    model.set(health.NSP_CLI, True)
    model.set(health.EGRESS, True)
    assert model.status(READINESS) == Status.NOT_SERVING
    changed = model.set(health.STREAM, True)
    assert changed == {health.STREAM: Status.SERVING, READINESS: Status.SERVING}
    assert model.status(LIVENESS) == Status.NOT_SERVING


def test_one_sub_service_going_down_takes_its_probe_down_and_no_other() -> None:
    model = lb_model()
    for sub in (health.NSP_CLI, health.EGRESS, health.STREAM, health.NSM_ENDPOINT):
        model.set(sub, True)
    changed = model.set(health.EGRESS, False)
    assert changed == {health.EGRESS: Status.NOT_SERVING, READINESS: Status.NOT_SERVING}
    assert model.status(LIVENESS) == Status.SERVING


def test_a_sub_service_may_belong_to_several_probes() -> None:
    model = ProbeModel({READINESS: [health.NSP_CLI], LIVENESS: [health.NSP_CLI]})
    assert model.set(health.NSP_CLI, True) == {health.NSP_CLI: Status.SERVING, READINESS: Status.SERVING,
                                              LIVENESS: Status.SERVING}


def test_a_probe_with_sub_services_cannot_be_set_directly_but_one_without_can() -> None:
    model = ProbeModel({LIVENESS: [health.NSP]})
    assert model.set(LIVENESS, True) == {}
    assert model.status(LIVENESS) == Status.NOT_SERVING
    model.register(STARTUP)
    assert model.set(STARTUP, True) == {STARTUP: Status.SERVING}


def test_setting_the_same_status_again_reports_no_change() -> None:
    model = lb_model()
    model.set(health.NSP_CLI, True)
    assert model.set(health.NSP_CLI, True) == {}


def test_shutdown_makes_everything_not_serving_and_later_sets_are_ignored() -> None:
    hc = health.Health({LIVENESS: [health.NSP]})
    hc.set_serving(health.NSP)
    hc.shutdown()
    hc.set_serving(health.NSP)
    assert {hc.status(s) for s in ("", LIVENESS, health.NSP)} == {Status.NOT_SERVING}


@pytest.mark.parametrize("exc, code", [
    pytest.param(grpcutil.InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT, id="InvalidArgument"),
    pytest.param(registry.InvalidTarget("x"), grpc.StatusCode.INVALID_ARGUMENT, id="a PermanentError subclass"),
    pytest.param(grpcutil.NotFound("x"), grpc.StatusCode.NOT_FOUND, id="NotFound"),
    pytest.param(grpcutil.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION, id="FailedPrecondition"),
    pytest.param(store.RegistryStoreError("x"), grpc.StatusCode.UNAVAILABLE, id="a TemporaryError subclass"),
    pytest.param(TemporaryError("x"), grpc.StatusCode.UNAVAILABLE, id="TemporaryError"),
    pytest.param(PermanentError("x"), grpc.StatusCode.INVALID_ARGUMENT, id="PermanentError"),
    pytest.param(KeyError("x"), grpc.StatusCode.INTERNAL, id="a bug"),
])
def test_exceptions_map_to_status_codes_by_class(exc: Exception, code: grpc.StatusCode) -> None:
    assert grpcutil.status_for(exc) is code


@pytest.mark.parametrize("address, path", [
    ("unix:///tmp/health.sock", "/tmp/health.sock"),
    ("unix:/tmp/health.sock", "/tmp/health.sock"),
    ("unix:relative.sock", "relative.sock"),
    ("127.0.0.1:7778", None),
    ("[::]:7778", None),
])
def test_unix_path_extracts_the_socket_path_of_unix_addresses_only(address: str, path: str | None) -> None:
    assert grpcutil.unix_path(address) == path
