"""``meridio dashboard`` in headless Chromium against the shared e2e environment.

Real: the environment, the dashboard process (``meridio dashboard`` on a free loopback port), Chromium
(``--headless --no-sandbox``, driven over DevTools so the checks read the DOM the page's own script keeps
up to date, without reloading). The test loads the page, checks that every pod and every gateway session
of the environment is on it (and up), saves a screenshot under the test's tmp dir, then freezes one FE's
BIRD (SIGSTOP) and checks that the FE and its sessions turn red within the refresh periods plus BFD's
detection time, and green again after SIGCONT. Both processes are stopped by pid, also on failure.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.e2e import chromium
from tests.e2e.framework import E2E, _until, wait_baseline

FE = "stateless-lb-frontend-attractor-a-1-0"
REFRESH_S = 2.0
"""The dashboard's poll of the daemon, and the page's fetch of the view: each 2 s."""
BFD_DETECT_S = 0.3 * 5
"""The default environment's gateways: BFD min-rx 300 ms, multiplier 5."""
STATUS_S = 3.0
"""A status snapshot queries every BIRD, TAPA and NSP (2 s timeouts): allow for one taking its time."""
TURNS_RED_S = 2 * REFRESH_S + BFD_DETECT_S + STATUS_S

pytestmark = pytest.mark.skipif(chromium.executable() is None, reason="needs chromium (Debian package chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def dashboard(e2e: E2E, tmp_path: pathlib.Path) -> Iterator[str]:
    """``meridio dashboard`` of the e2e environment; its URL. Stopped (SIGTERM by pid) at the end."""
    port = _free_port()
    with open(tmp_path / "dashboard.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "meridio.cli.main", "dashboard", "--env", e2e.env.name,
                                 "--port", str(port)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _until("the dashboard answering", lambda: _answers(url) or proc.poll() is not None, 30)
        assert proc.poll() is None, (tmp_path / "dashboard.log").read_text()
        yield url
    finally:
        _stop(proc)
    assert proc.returncode == 0, f"meridio dashboard exited {proc.returncode}: {(tmp_path / 'dashboard.log').read_text()}"


@pytest.fixture
def browser(dashboard: str, tmp_path: pathlib.Path) -> Iterator[chromium.Browser]:
    b = chromium.start(dashboard, tmp_path / "chromium", height=1200)
    try:
        yield b
    finally:
        b.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _elements(b: chromium.Browser, kind: str) -> dict[str, dict[str, str]]:
    """``data-name`` → every ``data-*`` of the page's elements of ``data-kind=kind``."""
    found = b.evaluate(f"[...document.querySelectorAll('[data-kind=\"{kind}\"]')].map(e => ({{...e.dataset}}))")
    return {e["name"]: e for e in found}


def _refreshed(b: chromium.Browser) -> float:
    return float(b.evaluate("Number(document.body.dataset.refreshed || 0)"))


def _bird_of(e2e: E2E, pod: str) -> int:
    """The pid of the BIRD the pod's frontend process runs (its child named ``bird``)."""
    (fe,) = [p for p in e2e.status()["processes"] if p["pod"] == pod and p["component"] == "frontend"]
    children = pathlib.Path(f"/proc/{fe['pid']}/task/{fe['pid']}/children").read_text().split()
    birds = [int(c) for c in children if pathlib.Path(f"/proc/{c}/comm").read_text().strip() == "bird"]
    assert len(birds) == 1, f"{pod}: frontend {fe['pid']} has children {children}, expected one bird"
    return birds[0]


@contextlib.contextmanager
def _frozen(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _fe_is(b: chromium.Browser, state: str) -> bool:
    pods, fes = _elements(b, "pod"), _elements(b, "fe")
    sessions = [s for s in _elements(b, "session").values() if s.get("frontend") == FE]
    return bool(sessions) and pods[FE]["state"] == state and fes[FE]["state"] == state and \
        all(s["state"] == state for s in sessions)


def test_the_dashboard_shows_every_pod_and_session_and_a_frozen_fe_turns_red(e2e: E2E, browser: chromium.Browser,
                                                                              tmp_path: pathlib.Path) -> None:
    e2e.wait_ready()  # an earlier test may have just disturbed sessions: start from a ready environment
    wait_baseline(e2e)
    _until("the page's first view", lambda: _refreshed(browser) > 0, 15)
    status = e2e.status()
    wanted_pods = {p["name"] for p in status["pods"]}
    # the sessions with the FE pods there are (a gateway may still list a deleted attractor's FEs as down)
    fe_addresses = {a.split("/")[0] for p in status["pods"] for a in p.get("addresses", [])}
    wanted_sessions = {f"{r['name']}/{s['neighbor']}" for r in status["routers"] for s in r["sessions"]
                       if s["neighbor"] in fe_addresses}
    assert len(wanted_sessions) >= 12, status["routers"]  # 2 FEs x 2 families on 3 peering gateways
    # the page's view may predate the snapshot by a refresh: wait for it to show everything up
    problems: list[str] = []

    def everything_up() -> bool:
        pods, ss = _elements(browser, "pod"), _elements(browser, "session")
        problems[:] = ([f"pod {p}: {pods[p]['state'] if p in pods else 'absent'}" for p in sorted(wanted_pods)
                        if pods.get(p, {}).get("state") != "up"]
                       + [f"session {s}: {ss[s]['state'] if s in ss else 'absent'}" for s in sorted(wanted_sessions)
                          if ss.get(s, {}).get("state") != "up"])
        return not problems
    try:
        _until("every pod and session on the page, up", everything_up, 3 * REFRESH_S + STATUS_S)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {problems}") from None
    assert set(_elements(browser, "gateway")) == {r["name"] for r in status["routers"]}
    assert browser.evaluate("document.getElementById('overall').dataset.state") == "up"
    shot = browser.screenshot(tmp_path / "dashboard.png")
    print(f"\nscreenshot: {shot}")

    bird = _bird_of(e2e, FE)
    with _frozen(bird):
        frozen_at = time.monotonic()
        _until(f"{FE} and its sessions red", lambda: _fe_is(browser, "down"), TURNS_RED_S)
        red_after = time.monotonic() - frozen_at
        others = [s for s in _elements(browser, "session").values() if s["frontend"] not in (FE, "")]
        assert others and all(s["state"] == "up" for s in others), json.dumps(others, indent=1)
        assert any(FE in r for r in browser.evaluate(
            "[...document.querySelectorAll('[data-kind=\"reason\"]')].map(e => e.textContent)"))
        browser.screenshot(tmp_path / "dashboard-frozen.png")
    print(f"{FE} red {red_after:.1f}s after its BIRD was frozen (allowed {TURNS_RED_S:.1f}s)")
    _until(f"{FE} and its sessions green again", lambda: _fe_is(browser, "up"), 60)
    e2e.wait_ready()
