"""``meridio run proxy`` settings: Meridio's NSM_* names, validation naming the variable, derived addresses."""
from __future__ import annotations

import pytest

from meridio.common import settings
from meridio.proxy import app

BASE = {"NSM_CONDUIT": "conduit-a-1", "NSM_TRENCH": "trench-a", "NSM_HOST": "node-1"}


def parse(**env: str) -> app.Settings:
    return settings.parse(app.Settings, app.ENV_PREFIX, [], {**BASE, **env})


def test_meridio_proxy_variables_fill_the_config() -> None:
    s = parse(NSM_IP_FAMILY="ipv6", NSM_MTU="1400", NSM_IP_RELEASE_DELAY="5s")
    cfg = app.config_from(s)
    assert (cfg.trench, cfg.conduit, cfg.node, cfg.families, cfg.mtu, cfg.release_delay) == (
        "trench-a", "conduit-a-1", "node-1", (6,), 1400, 5.0)


def test_defaults_are_meridios() -> None:
    s = parse()
    cfg = app.config_from(s)
    assert cfg.families == (4, 6) and cfg.mtu == 1500 and cfg.release_delay == 20.0
    assert s.bridge_ip_renew_interval == 300.0
    assert app.nsp_address(s) == "nsp-service-trench-a:7778"
    assert app.ipam_address(s) == "ipam-service-trench-a:7777"
    assert app.link_socket_path(s) == "/var/lib/meridio/trench-a/conduit-a-1/node-1/link.sock"


def test_full_addresses_win_and_unix_sockets_are_taken_as_paths() -> None:
    s = parse(NSM_NSP_SERVICE="unix:///run/m/nsp.sock", NSM_LINK_SOCKET="unix:///run/m/{conduit}/{node}.sock")
    assert app.nsp_address(s) == "unix:///run/m/nsp.sock"
    assert app.link_socket_path(s) == "/run/m/conduit-a-1/node-1.sock"


@pytest.mark.parametrize("env,message", [
    ({"NSM_CONDUIT": ""}, "NSM_CONDUIT: required"),
    ({"NSM_HOST": " "}, "NSM_HOST: required"),
    ({"NSM_MTU": "1279"}, "NSM_MTU=1279: must be between 1280 and 65535 for dualstack"),
    ({"NSM_MTU": "575", "NSM_IP_FAMILY": "ipv4"}, "NSM_MTU=575: must be between 576 and 65535 for ipv4"),
    ({"NSM_IP_RELEASE_DELAY": "-1s"}, "NSM_IP_RELEASE_DELAY: must not be negative"),
    ({"NSM_CHECK_INTERVAL": "0s"}, "NSM_CHECK_INTERVAL: must be positive"),
], ids=["no-conduit", "blank-host", "mtu-v6", "mtu-v4", "negative-delay", "zero-interval"])
def test_bad_settings_are_refused_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(settings.SettingsError, match="^" + message.replace("(", r"\(")):
        app.config_from(parse(**env))


def test_an_unknown_ip_family_is_refused_when_parsing() -> None:
    with pytest.raises(settings.SettingsError, match="NSM_IP_FAMILY"):
        parse(NSM_IP_FAMILY="ipv5")


def test_bad_settings_exit_with_status_2_without_starting(capsys: pytest.CaptureFixture[str]) -> None:
    s = settings.parse(app.Settings, app.ENV_PREFIX, [], {})
    assert app.run(s) == 2
    assert "NSM_CONDUIT: required" in capsys.readouterr().out


def test_the_pod_addresses_turn_cross_node_tunnels_on_and_a_bad_one_is_named() -> None:
    assert app.config_from(parse()).pod_ips == ()
    assert app.config_from(parse(NSM_POD_IP="10.244.1.3, fd00:10:244:1::3")).pod_ips == ("10.244.1.3",
                                                                                        "fd00:10:244:1::3")
    with pytest.raises(settings.SettingsError, match="NSM_POD_IP: '10.244.1' is not an IP address"):
        app.config_from(parse(NSM_POD_IP="10.244.1"))
