"""The e2e tier: Meridio's 21 e2e scenarios against the local runtime's default environment.

What is real: everything. One environment (the built-in default, named ``e2e``, prefix ``me2e``, with
every component's metrics on and a real Prometheus scraping them) is
brought up once for the session with ``meridio up`` and torn down with ``meridio down`` at the end
(``MERIDIO_E2E_ENV`` and ``MERIDIO_E2E_PREFIX`` name another one, so two runs on one machine do not meet),
also when tests fail (``MERIDIO_E2E_KEEP=1`` keeps it up to look at a failure; the status and
every log are copied aside when a test failed). Each test restores what it changed (re-applies the initial resources, re-opens
streams, scales back) and waits until the environment is as it found it. Every traffic check sends
400 connections and requires the exact number of distinct targets and 0 lost connections.
"""
from __future__ import annotations

import fcntl
import os
import pathlib
import shutil
from collections.abc import Iterator

import pytest
import yaml

from meridio.runtime.local import environment as envmod
from tests.conftest import is_root
from tests.e2e.framework import E2E

ENV_NAME = os.environ.get("MERIDIO_E2E_ENV", "e2e")
ENV_PREFIX = os.environ.get("MERIDIO_E2E_PREFIX", "me2e")


_FAILED: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.failed and "tests/e2e/" in str(item.fspath):
        _FAILED.append(item.nodeid)
    return report


def _collect_logs(suite: E2E, dest: pathlib.Path) -> None:
    """Meridio's on_failure log collector: the status and every process log, kept after ``down``."""
    from meridio.runtime.local.layout import state_root
    done = suite.meridio("status", "-o", "json", check=False)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "status.json").write_text(done.stdout or done.stderr)
    logs = state_root(ENV_NAME) / "logs"
    if logs.is_dir():  # gone when the environment itself was taken down under the suite
        shutil.copytree(logs, dest / "logs", dirs_exist_ok=True)
    print(f"\ne2e failures: status{' and logs' if logs.is_dir() else ''} kept in {dest}")


@pytest.fixture(scope="session")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    if not is_root():
        pytest.fail("the e2e suite needs root: run it through ./run.sh test")
    data = yaml.safe_load(envmod.DEFAULT_PATH.read_text())
    data.update(name=ENV_NAME, prefix=ENV_PREFIX, monitoring={"prometheus": True})  # the suite runs with metrics on
    env_file = tmp_path_factory.mktemp("e2e") / "environment.yaml"
    env_file.write_text(yaml.safe_dump(data))
    env = envmod.load(env_file)
    suite = E2E(env)
    suite.env_file = pathlib.Path(env_file)
    # One e2e session per environment name at a time: wait for another
    # checkout's run to finish rather than tear its environment down under it.
    lock = open(f"/run/lock/meridio-e2e-{ENV_NAME}.lock", "w")  # noqa: SIM115 - held for the whole session
    fcntl.flock(lock, fcntl.LOCK_EX)
    suite.meridio("down", check=False, timeout=120)  # what a previous, interrupted run may have left
    try:
        suite.meridio("up", "-f", str(env_file), "--timeout", "240", timeout=400)
        yield suite
    finally:
        if _FAILED:
            _collect_logs(suite, tmp_path_factory.mktemp("e2e-logs"))
        if os.environ.get("MERIDIO_E2E_KEEP") != "1":  # keep the environment up to debug a failure
            suite.meridio("down", check=False, timeout=120)
        lock.close()
