"""Headless Chromium driven over the DevTools protocol, for the dashboard's e2e test.

:func:`start` runs ``chromium --headless --no-sandbox`` in a process group of its own with a throwaway
profile and ``--remote-debugging-port=0``, reads the port Chromium chose from the profile's
``DevToolsActivePort``, and attaches to the page showing ``url``; :meth:`Browser.close` ends exactly
that process group (by its id), also when the test failed. Only what the test needs: evaluate an
expression in the page (the live DOM, as the page's own script updated it) and take a screenshot.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import time
import urllib.request
from typing import Any

from websockets.sync import client as wsclient

__all__ = ["Browser", "executable", "start"]


def executable() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self, proc: subprocess.Popen[bytes], ws: wsclient.ClientConnection, stack: contextlib.ExitStack) -> None:
        self.proc = proc
        self._ws = ws
        self._stack = stack
        self._next_id = 0

    def call(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        ident = self._next_id
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == ident:  # events (no id) and other answers are not waited for
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})  # type: ignore[no-any-return]

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: pathlib.Path) -> pathlib.Path:
        """The whole page (not only the window) as a PNG at ``path``."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            _stop_group(self.proc)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the browser's own process group (renderers, GPU, zygote), SIGKILL after 5 s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # what the leader left behind in its group
    except ProcessLookupError:
        pass


def _page_socket(port: int, url: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
            pages = [t for t in json.load(answer) if t.get("type") == "page" and t.get("url", "").startswith(url)]
        if pages:
            return str(pages[0]["webSocketDebuggerUrl"])
        time.sleep(0.2)
    raise RuntimeError(f"Chromium shows no page at {url}")


def start(url: str, profile: pathlib.Path, *, width: int = 1300, height: int = 1000, timeout: float = 30) -> Browser:
    """Chromium showing ``url``, attached over DevTools; the caller must :meth:`Browser.close` it."""
    exe = executable()
    if exe is None:
        raise RuntimeError("no chromium on this machine (Debian package chromium; ./run.sh setup installs it)")
    profile.mkdir(parents=True, exist_ok=True)
    port_file = profile / "DevToolsActivePort"
    port_file.unlink(missing_ok=True)  # a reused profile's file names a browser that is gone
    with open(profile / "chromium.log", "wb") as log:
        proc = subprocess.Popen([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                 "--disable-extensions", "--disable-background-networking", "--hide-scrollbars",
                                 f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                 f"--window-size={width},{height}", url],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not port_file.exists() or not port_file.read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Chromium did not start its DevTools endpoint; see {profile / 'chromium.log'}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        stack = contextlib.ExitStack()  # websockets wants its connection used as a context manager
        ws = stack.enter_context(wsclient.connect(_page_socket(port, url, timeout), max_size=64 * 1024 * 1024,
                                                  open_timeout=timeout))
    except BaseException:
        _stop_group(proc)
        raise
    browser = Browser(proc, ws, stack)
    browser.call("Page.enable")
    browser.call("Runtime.enable")
    return browser
