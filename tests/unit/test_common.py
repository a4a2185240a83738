"""Shared utilities: Go durations, settings from flags/env, JSON logs, backoff, the nsp.v1 model codec."""
import dataclasses
import io
import json
import os
import signal

import pytest

from meridio.api import model
from meridio.common import bounds, durations, log, retry, settings


@pytest.mark.parametrize("text,seconds", [("24s", 24.0), ("300ms", 0.3), ("1m30s", 90.0), ("1.5h", 5400.0),
                                          ("0", 0.0), ("-2s", -2.0), ("100us", 1e-4)],
                         ids=["s", "ms", "compound", "fraction", "zero", "negative", "us"])
def test_go_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert durations.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "24", "s", "1x", "1s2", " ms"], ids=["empty", "no-unit", "no-number",
                                                                         "bad-unit", "trailing", "space"])
def test_invalid_durations_are_rejected(text: str) -> None:
    with pytest.raises(durations.DurationError):
        durations.parse_duration(text)


@dataclasses.dataclass(frozen=True)
class _Settings:
    port: int = settings.setting(7778, "port")
    timeout: float = settings.setting(60.0, "timeout", duration=True)
    debug: bool = settings.setting(False, "debug")
    name: str = settings.setting("x", "name", choices=("x", "y"))
    items: tuple[str, ...] = settings.setting((), "items")


def test_settings_flags_win_over_environment_which_wins_over_defaults() -> None:
    s = settings.parse(_Settings, "T_", ["--port", "9000"], {"T_PORT": "1", "T_TIMEOUT": "500ms",
                                                              "T_DEBUG": "true", "T_ITEMS": "a, b"})
    assert s == _Settings(port=9000, timeout=0.5, debug=True, name="x", items=("a", "b"))
    assert settings.parse(_Settings, "T_", [], {}) == _Settings()


def test_bad_setting_names_flag_or_variable() -> None:
    with pytest.raises(settings.SettingsError, match="T_TIMEOUT"):
        settings.parse(_Settings, "T_", [], {"T_TIMEOUT": "soon"})
    with pytest.raises(settings.SettingsError, match="--name"):
        settings.parse(_Settings, "T_", ["--name", "z"], {})


def test_log_lines_are_json_with_fixed_and_bound_keys() -> None:
    out = io.StringIO()
    logger = log.setup("test", "DEBUG", stream=out, install_signals=False)
    logger.bind(trench="trench-a").info("targetRegistered", target="t1")
    logger.trace("hidden")
    line = json.loads(out.getvalue().strip())
    assert line["severity"] == "info" and line["service_id"] == "Meridio-test"
    assert line["message"] == "targetRegistered" and line["trench"] == "trench-a" and line["target"] == "t1"
    assert "timestamp" in line and len(out.getvalue().strip().splitlines()) == 1


def test_sigusr1_toggles_debug_and_sigusr2_turns_on_trace() -> None:
    out = io.StringIO()
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGUSR2)}
    try:
        logger = log.setup("test", "INFO", stream=out)

        def logged(message: str) -> bool:
            before = out.tell()
            logger.debug(message)
            logger.trace(message + "-trace")
            return message in out.getvalue()[before:]
        assert not logged("quiet")
        os.kill(os.getpid(), signal.SIGUSR1)
        assert logged("debug-on") and "debug-on-trace" not in out.getvalue()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert not logged("debug-off")
        os.kill(os.getpid(), signal.SIGUSR2)
        assert logged("trace-on") and "trace-on-trace" in out.getvalue()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_backoff_doubles_to_cap_and_resets() -> None:
    b = retry.Backoff(initial=1, cap=5)
    assert [b.next_delay() for _ in range(5)] == [1, 2, 4, 5, 5]
    b.reset()
    assert b.next_delay() == 1


def test_model_round_trips_through_protobuf() -> None:
    t = model.Trench("trench-a")
    vip = model.Vip("vip", "20.0.0.1/32", t)
    conduit = model.Conduit("c", t, (model.PortNat(80, 4000, "tcp", (vip,)),))
    stream = model.Stream("s", conduit, 100)
    flow = model.Flow("f", stream, 1, ("tcp",), ("0.0.0.0/0",), ("0-65535",), ("4000",), (vip,), ("tcp[2:2] = 4002",))
    gw = model.Gateway("g", "169.254.100.150", "ipv4", "bgp", 4248829953, 8103, 10179, 10179, 24, True,
                       model.BfdSpec(300, 300, 5), t, model.BgpAuth("key", "secret"))
    target = model.Target.make(["172.16.1.6/24"], {"identifier": "7"}, model.TargetStatus.DISABLED,
                               model.TargetType.DEFAULT, stream)
    assert model.flow_from_pb(model.flow_to_pb(flow)) == flow
    assert model.gateway_from_pb(model.gateway_to_pb(gw)) == gw
    assert model.attractor_from_pb(model.attractor_to_pb(model.Attractor("a", t, (vip,), (gw,)))) == \
        model.Attractor("a", t, (vip,), (gw,))
    assert model.target_from_pb(model.target_to_pb(target)) == target and target.identifier == "7"
    assert conduit.destination_port_nats[0].nat_name == "80-4000-tcp"


def test_listen_address_uses_a_unix_socket_as_is_and_joins_host_and_port_otherwise() -> None:
    from meridio.common import grpcutil

    assert grpcutil.listen_address("unix:/run/m/nsp.sock", 7778) == "unix:/run/m/nsp.sock"
    assert grpcutil.listen_address("[::]", 7778) == "[::]:7778"
    assert grpcutil.listen_address("127.0.0.1", 0) == "127.0.0.1:0"


def test_quote_truncates_long_input_and_says_how_long_it_was() -> None:
    assert bounds.quote("evil") == "'evil'"
    quoted = bounds.quote("x" * 1_000_000)
    assert quoted == f"{'x' * 64!r}... (1000000 characters)"
    assert len(bounds.quote(["a" * 500])) < 100


def test_check_name_accepts_dns_names_and_refuses_others_naming_the_field() -> None:
    assert bounds.check_name("f", "trench-a.b", ValueError) == "trench-a.b"
    assert bounds.check_name("f", "", ValueError, allow_empty=True) == ""
    for bad, rule in (("", "must not be empty"), ("A", "not a valid name"), ("-a", "not a valid name"),
                      ("a" * 254, "at most 253 characters")):
        with pytest.raises(ValueError, match=f"^f: .*{rule}"):
            bounds.check_name("f", bad, ValueError)
