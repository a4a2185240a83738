"""The dashboard's poller with fake sources (snapshot, resources, metrics, clock), and its HTTP side as
an in-process pair on a loopback port: the page, ``/api/view``, nothing else."""
from __future__ import annotations

import json
import pathlib
import re
import threading
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from meridio.cli import main as climain
from meridio.cli.dashboard import server
from meridio.runtime.local import client
from tests.unit import dashboard_samples as s


class _Fakes:
    def __init__(self) -> None:
        self.now = 100.0
        self.packets = {s.FE0: 0.0, s.FE1: 0.0}
        self.down = False
        self.asked: list[str] = []

    def status(self):  # type: ignore[no-untyped-def]
        if self.down:
            raise client.DaemonUnavailable("no runtime daemon at /state/runtime.sock")
        return s.snapshot()

    def metrics(self, pod: str) -> str | None:
        self.asked.append(pod)
        return s.metrics_text({"7": self.packets[pod]}) if pod in self.packets else None

    def sources(self) -> server.Sources:
        return server.Sources(status=self.status, objects=lambda: s.OBJS, metrics=self.metrics, clock=lambda: self.now)


def _target7(body: bytes) -> dict:  # type: ignore[type-arg]
    data = json.loads(body)
    targets = data["trenches"][0]["conduits"][0]["streams"][0]["targets"]
    return next(t for t in targets if t["identifier"] == "7")  # type: ignore[no-any-return]


def test_the_poller_asks_every_running_lb_pod_and_serves_rates_between_refreshes() -> None:
    fakes = _Fakes()
    poller = server.Poller("lab", fakes.sources())
    poller.refresh()
    assert sorted(fakes.asked) == [s.FE0, s.FE1] and _target7(poller.latest())["packets_per_s"] is None
    fakes.now, fakes.packets = 102.0, {s.FE0: 30.0, s.FE1: 10.0}
    poller.refresh()
    target = _target7(poller.latest())
    assert target["packets_per_s"] == 20.0 and target["packets"] == 40.0 and target["state"] == "up"


def test_a_daemon_that_stops_answering_gives_a_view_that_says_so() -> None:
    fakes = _Fakes()
    poller = server.Poller("lab", fakes.sources())
    assert json.loads(poller.latest())["error"].startswith("starting")
    fakes.down = True
    v = poller.refresh()
    assert v.error == "no status from environment 'lab': no runtime daemon at /state/runtime.sock"
    assert json.loads(poller.latest())["state"] == "down"


def test_metrics_that_do_not_parse_count_as_a_pod_that_does_not_answer() -> None:
    fakes = _Fakes()
    poller = server.Poller("lab", server.Sources(status=fakes.status, objects=lambda: s.OBJS,
                                                 metrics=lambda pod: "not { prometheus", clock=lambda: 0.0))
    poller.refresh()
    assert _target7(poller.latest())["packets"] is None


@pytest.fixture
def served() -> Iterator[tuple[str, _Fakes]]:
    fakes = _Fakes()
    poller = server.Poller("lab", fakes.sources())
    poller.refresh()
    httpd = server.make_server("127.0.0.1", 0, poller)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", fakes
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_the_server_serves_the_page_and_the_view_and_nothing_else(served) -> None:  # type: ignore[no-untyped-def]
    base, _ = served
    code, headers, body = _get(base + "/")
    assert code == 200 and headers["Content-Type"].startswith("text/html") and b"/api/view" in body
    assert headers["Content-Security-Policy"] == server.CSP and headers["Cache-Control"] == "no-store"
    code, headers, body = _get(base + "/api/view")
    assert code == 200 and headers["Content-Type"] == "application/json" and json.loads(body)["environment"] == "lab"
    assert _get(base + "/etc/passwd")[0] == 404


def test_the_page_loads_nothing_from_anywhere_else() -> None:
    text = server.page().decode()
    assert not re.search(r"<(script|link|img|iframe)[^>]*\b(src|href)=", text)
    assert "@import" not in text and "url(" not in text
    assert re.findall(r"https?://[^\s\"']+", text) == ["http://www.w3.org/2000/svg"]  # the SVG namespace name


def test_the_page_is_package_data() -> None:
    pyproject = tomllib.loads((pathlib.Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "**/*.html" in pyproject["tool"]["setuptools"]["package-data"]["meridio"]


def test_dashboard_of_an_environment_that_is_not_up_is_one_sentence(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MERIDIO_STATE_DIR", str(tmp_path / "state"))
    assert climain.main(["dashboard", "--port", "0"]) == 1
    assert capsys.readouterr().err.strip() == "meridio: environment 'default' is not up (run: meridio up)"
