"""Node-local sockets and who may use them (issue 15): the proxy's link and credential sockets, the LB's
availability socket and TAPA's API socket are owner-only, refuse other uids even when their file mode is
opened up, and the link service gives pod P's link only to P's namespace.

Real: NSP, IPAM, proxy, LB and TAPA processes; the callers are separate processes in their own
namespaces, as uid ``nobody`` (``setpriv``) where it says so, running Debian's ``/usr/bin/python3``
(the project's interpreter lives under ``/root``, which ``nobody`` cannot read) with a stdlib-only
probe. Fake: the LB replica's announcement to the proxy (:class:`tests.netns.conduit_support.FakeLbAnnouncer`)
and the frontend's announcement to the LB.
"""
from __future__ import annotations

import json
import os
import pathlib
import stat
from typing import Any

import pytest

from meridio.kernel import netns as netnsmod
from tests.conftest import wait_for
from tests.netns.conduit_support import ConduitEnv, ProxyPod, links

pytestmark = pytest.mark.netns

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"
PROBE = r"""
import json, os, socket, sys
path, kind = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
try:
    s.connect(path)
except OSError as exc:
    print(json.dumps({"connected": False, "errno": exc.errno}))
    sys.exit()
try:  # a server that disconnects at once may make the write fail (EPIPE) as well as the read
    if kind == "grpc":  # an HTTP/2 client preface and an empty SETTINGS frame: a gRPC server answers SETTINGS
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
    else:  # the credential request: its own network namespace attached
        socket.send_fds(s, [b"netns\n"], [os.open("/proc/thread-self/ns/net", os.O_RDONLY)])
    data = s.recv(4096)
except OSError as exc:
    data = b""
print(json.dumps({"connected": True, "reply": data.decode("latin-1")}))
"""


def probe(ns: str, path: str, kind: str, *, uid: int | None = NOBODY) -> dict[str, Any]:
    """Connect to ``path`` from a process in ``ns`` (as ``uid``; None: root) and read its first answer."""
    argv = [SYSTEM_PYTHON, "-c", PROBE, path, kind]
    if uid is not None:
        argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]
    return json.loads(netnsmod.run(ns, argv).stdout)  # type: ignore[no-any-return]


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def open_up_directories(path: str, base: pathlib.Path) -> None:
    """Make every directory from ``base`` down to ``path``'s traversable by all (0755), so only the socket's
    own mode and the peer check stand between another uid and the socket."""
    here = pathlib.Path(path).parent
    while True:
        os.chmod(here, 0o755)
        if here == base or here == here.parent:
            break
        here = here.parent


def setup_proxy(conduit_env, **extra: str) -> tuple[ConduitEnv, ProxyPod]:  # type: ignore[no-untyped-def]
    env = conduit_env(ip_family="ipv4")
    env.add_lb("lb-1")
    args = tuple(x for k, v in extra.items() for x in (f"--{k.replace('_', '-')}", v))
    px = env.add_proxy("node-1", extra=args)
    wait_for(lambda: len(env.lbs["lb-1"].interfaces()) == 1, 10, message="LB link")
    return env, px


def test_the_proxys_sockets_are_owner_only_in_a_directory_of_their_own(conduit_env) -> None:  # type: ignore[no-untyped-def]
    _env, px = setup_proxy(conduit_env)
    for path in (px.socket, px.socket + ".cred", px.socket + ".grpc"):
        assert stat.S_ISSOCK(os.stat(path).st_mode) and mode(path) == 0o600, (path, oct(mode(path)))
    assert mode(os.path.dirname(px.socket)) == 0o700


def test_another_uid_in_its_own_namespace_gets_no_link_even_if_the_sockets_are_opened_up(conduit_env) -> None:  # type: ignore[no-untyped-def]
    env, px = setup_proxy(conduit_env)
    caller = env.add_target("intruder")
    open_up_directories(px.socket, env.base)
    cred, grpc_sock = px.socket + ".cred", px.socket
    # owner-only files: the kernel refuses the connection (EACCES = 13)
    assert probe(caller, cred, "line") == {"connected": False, "errno": 13}
    assert probe(caller, grpc_sock, "grpc") == {"connected": False, "errno": 13}
    # a careless chmod 0666 (what main shipped): the peer check still refuses uid 65534
    for path in (cred, grpc_sock):
        os.chmod(path, 0o666)
    refused = probe(caller, cred, "line")
    assert refused["connected"] and refused["reply"].startswith("error uid 65534 may not use this socket"), refused
    assert probe(caller, grpc_sock, "grpc") == {"connected": True, "reply": ""}
    # the same probes as root get a credential and an HTTP/2 answer: the check above is the uid
    assert probe(caller, cred, "line", uid=None)["reply"].startswith("ok ")
    assert probe(caller, grpc_sock, "grpc", uid=None)["reply"] != ""
    assert px.ports("pt-") == {} and set(links(caller)) == {"lo"}


def test_a_uid_and_group_in_the_settings_may_use_the_sockets(conduit_env) -> None:  # type: ignore[no-untyped-def]
    env, px = setup_proxy(conduit_env, socket_uids=str(NOBODY), socket_group=str(NOBODY))
    open_up_directories(os.path.dirname(px.socket), env.base)
    caller = env.add_target("allowed")
    assert mode(px.socket) == mode(px.socket + ".cred") == 0o660
    assert os.stat(px.socket).st_gid == NOBODY
    assert probe(caller, px.socket + ".cred", "line")["reply"].startswith("ok ")
    assert probe(caller, px.socket, "grpc")["reply"] != ""


def test_a_link_for_a_pod_is_given_only_to_a_caller_in_that_pods_namespace(conduit_env) -> None:  # type: ignore[no-untyped-def]
    env = conduit_env(ip_family="ipv4")
    env.add_lb("lb-1")
    template = f"/run/netns/{env.netns.prefix}-{{pod}}"
    px = env.add_proxy("node-1", extra=("--pod-netns", template))
    wait_for(lambda: len(env.lbs["lb-1"].interfaces()) == 1, 10, message="LB link")
    pod_a, pod_b = env.add_target("pod-a"), env.add_target("pod-b")
    intruder = env.link_owner(pod_b)
    steal = intruder.call(op="connect", socket=px.socket, target_id="pod-a", ifname="nsm-0")
    assert steal["code"] == "PERMISSION_DENIED" and "not pod pod-a's" in steal["error"], steal
    ghost = intruder.call(op="connect", socket=px.socket, target_id="no-such-pod", ifname="nsm-0")
    assert ghost["code"] == "PERMISSION_DENIED" and "has no network namespace" in ghost["error"], ghost
    assert px.ports("pt-") == {} and set(links(pod_b)) == {"lo"}
    link = env.link_owner(pod_a).connect(px.socket, "pod-a", "nsm-0")
    assert link["interface_name"] == "nsm-0" and "nsm-0" in links(pod_a)
    assert intruder.connect(px.socket, "pod-b", "nsm-0")["interface_name"] == "nsm-0"


def test_a_pod_name_whose_owner_died_cannot_be_taken_from_another_namespace(conduit_env) -> None:  # type: ignore[no-untyped-def]
    env, px = setup_proxy(conduit_env)
    real, other = env.add_target("real"), env.add_target("other")
    owner = env.link_owner(real)
    owner.connect(px.socket, "target-real", "nsm-0")
    owner.kill()  # the TAPA died; the pod (its namespace) is still there
    take = env.link_owner(other).call(op="connect", socket=px.socket, target_id="target-real", ifname="nsm-0")
    assert take["code"] == "PERMISSION_DENIED" and "still exists" in take["error"], take
    assert "nsm-0" in links(real) and "nsm-0" not in links(other)
    again = env.link_owner(real).connect(px.socket, "target-real", "nsm-0")  # its own pod adopts it again
    assert again["interface_name"] == "nsm-0"


def test_the_tapa_socket_is_owner_only_and_refuses_other_uids(conduit_env) -> None:  # type: ignore[no-untyped-def]
    env = conduit_env(ip_family="ipv4")
    pod = env.add_target_pod("tgt-1", "node-1")
    assert mode(pod.socket) == 0o600 and mode(pod.socket + ".grpc") == 0o600
    open_up_directories(pod.socket, env.base)
    caller = env.add_target("intruder")
    assert probe(caller, pod.socket, "grpc") == {"connected": False, "errno": 13}
    os.chmod(pod.socket, 0o666)
    assert probe(caller, pod.socket, "grpc") == {"connected": True, "reply": ""}
    assert probe(caller, pod.socket, "grpc", uid=None)["reply"] != ""
    assert pod.statuses() == {}  # and the TAPA still serves its own (root) callers


def test_the_lb_availability_socket_is_owner_only_and_refuses_other_uids(conduit_env) -> None:  # type: ignore[no-untyped-def]
    env = conduit_env(ip_family="ipv4")
    lb = env.add_lb("lb-1", real=True)
    sock = f"{env.base}/lb-lb-1.sock"
    wait_for(lambda: os.path.exists(sock) and os.path.exists(sock + ".grpc"), 20, message="LB serving")
    assert mode(sock) == 0o600 and mode(sock + ".grpc") == 0o600
    open_up_directories(sock, env.base)
    caller = env.add_target("intruder")
    assert probe(caller, sock, "grpc") == {"connected": False, "errno": 13}
    os.chmod(sock, 0o666)
    assert probe(caller, sock, "grpc") == {"connected": True, "reply": ""}
    assert probe(caller, sock, "grpc", uid=None)["reply"] != ""
    assert lb.lb_proc is not None and lb.lb_proc.poll() is None
