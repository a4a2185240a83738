"""TCP-MD5 authentication of the BGP sessions, with the key read from a Secret-volume-like directory
that the frontend watches (Meridio live-reloads Secrets).

Real: FE daemon + BIRD, gateway BIRD with a password on its dynamic peers, the NSP, the kernel's TCP-MD5.
Test double: the LB's availability service.
"""
from __future__ import annotations

import os
import pathlib
import time

import pytest

from tests.support import frontend as testing
from tests.support.frontend import FeEnv, eventually, gateway_item

VIPS = {"vip-v4": "203.0.113.10/32", "vip-v6": "2001:db8:f::10/128"}


@pytest.fixture
def env(fe_env: FeEnv) -> FeEnv:
    return fe_env


def write_secret(directory: pathlib.Path, value: str) -> None:
    secret = directory / "bgp-auth"
    secret.mkdir(parents=True, exist_ok=True)
    tmp = secret / ".password.tmp"
    tmp.write_text(value)
    os.replace(tmp, secret / "password")


def test_a_wrong_md5_key_gives_no_session_and_the_right_key_one(env: FeEnv) -> None:
    secrets = env.workdir / "secrets"
    write_secret(secrets, "wrong-key")
    env.start_gateway(testing.gateway_config(env.segment, password="right-key"))
    env.start_nsp(testing.nsp_config(vips=VIPS, gateways=[
        gateway_item("gw-v4", env.segment.gw_v4, auth=("password", "bgp-auth")),
        gateway_item("gw-v6", env.segment.gw_v6, auth=("password", "bgp-auth"))]))
    env.start_frontend(0, extra=["--secrets-dir", str(secrets), "--secrets-poll-interval", "200ms"])
    env.lbs[0].set_available(True)
    eventually(lambda: {"NBR-gw-v4", "NBR-gw-v6"} <= set(env.fe_protocols(0)), 10,
               message="both gateway protocols configured with the wrong key")

    deadline = time.monotonic() + 4.0  # four connect retries (1 s) for each session
    while time.monotonic() < deadline:
        assert not any("Established" in p.info for p in env.fe_protocols(0).values())
        time.sleep(0.1)
    assert not env.fe_ready(0)
    assert not env.gw_nexthops("203.0.113.10")

    write_secret(secrets, "right-key")
    eventually(lambda: env.established(0, "gw-v4", "gw-v6"), 20, message="sessions with the right key")
    eventually(lambda: env.gw_nexthops("203.0.113.10") and env.gw_nexthops("2001:db8:f::10"), 10,
               message="VIPs announced over the authenticated sessions")
    assert env.fe_ready(0)


def test_a_gateway_whose_secret_is_missing_is_skipped_and_the_others_work(env: FeEnv) -> None:
    secrets = env.workdir / "secrets"
    secrets.mkdir()
    env.start_gateway()
    env.start_nsp(testing.nsp_config(vips=VIPS, gateways=[
        gateway_item("gw-v4", env.segment.gw_v4), gateway_item("gw-v6", env.segment.gw_v6),
        gateway_item("gw-auth", "192.0.2.200", auth=("password", "no-such-secret"))]))
    env.start_frontend(0, extra=["--secrets-dir", str(secrets)])
    eventually(lambda: env.established(0, "gw-v4", "gw-v6"), 20, message="the other gateways' sessions")
    assert "NBR-gw-auth" not in env.fe_protocols(0)
    skipped = [e for e in env.fe_events(0) if e.get("message") == "gatewaySkipped"]
    assert skipped and skipped[0]["gateway"] == "gw-auth" and "no-such-secret" in skipped[0]["error"]
