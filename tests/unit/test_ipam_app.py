"""``meridio run ipam`` settings: Meridio's IPAM_* variables, defaults, and one-line start-up errors."""
from __future__ import annotations

import ipaddress
import re

import pytest

from meridio.common import settings as settingsmod
from meridio.ipam import app, tree

REQUIRED = {"IPAM_TRENCH_NAME": "trench-a", "IPAM_NSP_SERVICE": "127.0.0.1:7778"}


def parse(env: dict[str, str], argv: list[str] | None = None) -> app.Settings:
    return settingsmod.parse(app.Settings, app.ENV_PREFIX, argv, {**REQUIRED, **env})


def test_defaults_are_the_operators_values() -> None:
    s = parse({})
    assert (s.port, s.prefix_ipv4, s.prefix_ipv6) == (7777, "172.16.0.0/16", "fd00::/48")
    assert (s.conduit_prefix_length_ipv4, s.conduit_prefix_length_ipv6) == (20, 56)
    assert (s.node_prefix_length_ipv4, s.node_prefix_length_ipv6) == (24, 64)
    assert (s.ip_family, s.datasource) == ("dualstack", "/run/ipam/data/registry.db")
    assert (s.garbage_collection_enabled, s.garbage_collection_interval, s.garbage_collection_threshold) \
        == (True, 7200.0, 2400.0)
    assert [(x.family, str(x.prefix), x.conduit_length, x.node_length) for x in app.check(s)] == [
        (tree.Family.IPV4, "172.16.0.0/16", 20, 24), (tree.Family.IPV6, "fd00::/48", 56, 64)]


def test_meridio_environment_variables_are_read() -> None:
    s = parse({"IPAM_PORT": "7000", "IPAM_PREFIX_IPV4": "10.0.0.0/8", "IPAM_CONDUIT_PREFIX_LENGTH_IPV4": "12",
               "IPAM_NODE_PREFIX_LENGTH_IPV4": "16", "IPAM_IP_FAMILY": "ipv4", "IPAM_DATASOURCE": "/tmp/x.db",
               "IPAM_GARBAGE_COLLECTION_ENABLED": "false", "IPAM_GARBAGE_COLLECTION_INTERVAL": "1m",
               "IPAM_GARBAGE_COLLECTION_THRESHOLD": "30s", "IPAM_LOG_LEVEL": "INFO"})
    assert app.check(s) == [tree.Layout(tree.Family.IPV4, ipaddress.ip_network("10.0.0.0/8"), 12, 16)]
    assert (s.port, s.datasource, s.garbage_collection_enabled, s.garbage_collection_interval,
            s.garbage_collection_threshold, s.log_level) == (7000, "/tmp/x.db", False, 60.0, 30.0, "INFO")


def test_ipv6_only_trench_ignores_the_ipv4_settings() -> None:
    s = parse({"IPAM_IP_FAMILY": "ipv6", "IPAM_PREFIX_IPV4": "not checked"})
    assert [x.family for x in app.check(s)] == [tree.Family.IPV6]


@pytest.mark.parametrize("env,message", [
    ({"IPAM_TRENCH_NAME": ""}, "IPAM_TRENCH_NAME: must name the trench"),
    ({"IPAM_NSP_SERVICE": "nsp-service"}, "IPAM_NSP_SERVICE='nsp-service': must be host:port"),
    ({"IPAM_PORT": "70000"}, "IPAM_PORT=70000"),
    ({"IPAM_PREFIX_IPV4": "172.16.0.1/16"}, "IPAM_PREFIX_IPV4='172.16.0.1/16': not an IPv4 prefix"),
    ({"IPAM_PREFIX_IPV4": "fd00::/48"}, "is not an ipv4 prefix"),
    ({"IPAM_CONDUIT_PREFIX_LENGTH_IPV4": "16"}, "trench < conduit < node <= 30"),
    ({"IPAM_NODE_PREFIX_LENGTH_IPV4": "20"}, "conduit /20, node /20"),
    ({"IPAM_NODE_PREFIX_LENGTH_IPV4": "31"}, "first and last node address are reserved"),
    ({"IPAM_NODE_PREFIX_LENGTH_IPV6": "127"}, "IPAM_NODE_PREFIX_LENGTH_IPV6"),
    ({"IPAM_GARBAGE_COLLECTION_THRESHOLD": "0s"}, "IPAM_GARBAGE_COLLECTION_THRESHOLD: must be a positive"),
], ids=["no-trench", "nsp-no-port", "bad-port", "host-bits", "wrong-family", "conduit-not-longer",
        "node-not-longer", "node-too-long", "ipv6-node-too-long", "zero-threshold"])
def test_inconsistent_settings_are_refused_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(settingsmod.SettingsError, match=re.escape(message)) as info:
        app.check(parse(env))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name,value", [("IPAM_IP_FAMILY", "ipv5"), ("IPAM_LOG_LEVEL", "LOUD")],
                         ids=["ip-family", "log-level"])
def test_unknown_choice_is_refused_when_parsing(name: str, value: str) -> None:
    with pytest.raises(settingsmod.SettingsError, match=name):
        parse({name: value})


def test_run_with_bad_settings_prints_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert app.run(parse({"IPAM_NODE_PREFIX_LENGTH_IPV4": "16"})) == 2
    err = capsys.readouterr().err
    assert err.startswith("meridio run ipam: invalid setting IPAM_PREFIX_IPV4") and err.count("\n") == 1
