"""The conduit chain with mutual TLS on every component connection (NSP, IPAM, LB, proxy, TAPA).

Real: every process and the kernel, as in ``test_conduit_tapa``; each process has its own certificate
from the bed's CA (:meth:`ConduitEnv.tls_env`). Faked: the frontend's FRONTEND registration (it carries
a frontend's certificate, as the real one would).
"""
from __future__ import annotations

import pytest

from meridio.common import identity as idm
from meridio.common import tls as tlsmod
from tests.netns.conduit_support import conduit_env, links  # noqa: F401
from tests.netns.test_conduit_tapa import _assert_all_reach, _wait_reach, _wait_streams

pytestmark = pytest.mark.netns


def test_open_and_close_work_end_to_end_with_mutual_tls(conduit_env) -> None:  # type: ignore[no-untyped-def]
    env = conduit_env(tls=True)
    env.add_lb("lb-1", real=True)
    env.add_proxy("node-1")
    t1, t2 = env.add_target_pod("target-1", "node-1"), env.add_target_pod("target-2", "node-1")
    for t in (t1, t2):
        t.target("open", "stream-a-i")
        _wait_streams(t, {"stream-a-i": "OPEN"})
    _wait_reach(env, {"target-1", "target-2"})
    _assert_all_reach(env, {"target-1", "target-2"})
    t2.target("close", "stream-a-i")
    _wait_streams(t2, {})
    _wait_reach(env, {"target-1"})
    assert "tlsUnusable" not in env.procs.output(t1.tapa)


def test_a_link_is_given_only_to_the_tapa_certificate_of_the_pod_it_claims(conduit_env) -> None:  # type: ignore[no-untyped-def]
    """One caller in pod target-9's namespace: plain, then with another pod's TAPA certificate, then with its
    own; only the last gets a link (so the first two refusals are the TLS listener's and the identity check's,
    not the socket's)."""
    env = conduit_env(tls=True)
    proxy = env.add_proxy("node-1")
    ns = env.add_target("target-9")
    owner = env.link_owner(ns)
    reply = owner.call(op="connect", socket=proxy.socket, target_id="target-9", ifname="nsm-0")
    assert not reply["ok"] and reply["code"] == "UNAVAILABLE", reply
    assert proxy.ports("pt-") == {} and set(links(ns)) == {"lo"}, "no link for a caller without a certificate"
    other = env.tls_env(idm.Component.TAPA, "target-1", trench=None, node="node-1")
    reply = owner.call(op="connect_tls", socket=proxy.socket, target_id="target-9", ifname="nsm-0",
                       tls=other[tlsmod.DIR_ENV])
    assert not reply["ok"] and reply["code"] == "PERMISSION_DENIED", reply
    assert "certificate names pod 'target-1'" in reply["error"], reply
    assert proxy.ports("pt-") == {} and set(links(ns)) == {"lo"}
    own = env.tls_env(idm.Component.TAPA, "target-9", trench=None, node="node-1")
    reply = owner.call(op="connect_tls", socket=proxy.socket, target_id="target-9", ifname="nsm-0",
                       tls=own[tlsmod.DIR_ENV])
    assert reply["ok"], reply
    assert len(proxy.ports("pt-")) == 1 and "nsm-0" in links(ns)
