"""Shared test fixtures.

What is real: every fixture here uses the real kernel (``ip netns``) and real processes.
``netns`` hands out uniquely named namespaces and removes them at teardown, also when the test fails;
``procs`` starts processes and stops exactly the ones it started, by pid. Processes it starts run with
``MERIDIO_TLS_INSECURE=true`` (plain gRPC between components: these tiers test the components'
behaviour, the TLS tests in ``tests/integration/test_tls.py`` and the e2e tier run with mutual TLS)
unless the caller passes ``MERIDIO_TLS_DIR`` or ``MERIDIO_TLS_INSECURE`` itself.
"""
from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence

import pytest

from meridio.kernel import netns as netnsmod

ROOT = pathlib.Path(__file__).resolve().parent.parent


def is_root() -> bool:
    return os.geteuid() == 0


class NetnsFactory:
    """Creates namespaces named ``mt<run>-<name>``, unique per test, and removes them all at the end."""

    def __init__(self) -> None:
        self.prefix = "mt" + uuid.uuid4().hex[:6]
        self.created: list[str] = []

    def __call__(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        netnsmod.create(full)
        self.created.append(full)
        return full

    def cleanup(self) -> None:
        for name in reversed(self.created):
            netnsmod.remove(name)


@pytest.fixture
def netns() -> Iterator[NetnsFactory]:
    if not is_root():
        pytest.fail("network namespace tests need root: run them through ./run.sh test")
    factory = NetnsFactory()
    try:
        yield factory
    finally:
        factory.cleanup()


class Procs:
    """Starts processes (optionally in a namespace) and stops exactly those, by pid, at teardown."""

    def __init__(self, logdir: pathlib.Path) -> None:
        self.logdir = logdir
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], *, ns: str | None = None, env: dict[str, str] | None = None,
              name: str | None = None) -> subprocess.Popen[bytes]:
        label = name or pathlib.Path(argv[0]).name
        log = open(self.logdir / f"{label}-{len(self.started)}.log", "wb")
        plain = {} if env and ("MERIDIO_TLS_DIR" in env or "MERIDIO_TLS_INSECURE" in env) else \
            {"MERIDIO_TLS_INSECURE": "true"}
        proc = subprocess.Popen(netnsmod.exec_argv(ns, argv), stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **plain, **(env or {})}, start_new_session=True)
        proc.log_path = log.name  # type: ignore[attr-defined]
        self.started.append(proc)
        return proc

    def meridio(self, *args: str, ns: str | None = None, env: dict[str, str] | None = None,
                name: str | None = None) -> subprocess.Popen[bytes]:
        """Start ``meridio ARGS`` with this interpreter."""
        return self.start([sys.executable, "-m", "meridio.cli.main", *args], ns=ns, env=env,
                          name=name or (args[1] if len(args) > 1 else args[0]))

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def cleanup(self) -> None:
        for proc in reversed(self.started):
            self.stop(proc, timeout=5.0)

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        return pathlib.Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


@pytest.fixture
def procs(tmp_path: pathlib.Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.cleanup()


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message} (last value: {last!r})")


async def eventually(predicate, timeout: float = 15.0, interval: float = 0.05, message: str = "condition"):  # type: ignore[no-untyped-def]
    """:func:`wait_for` for async tests: polls without blocking the event loop."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message} (last value: {last!r})")
