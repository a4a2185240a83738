"""The supervisor with real, short-lived child processes (no root, no namespaces)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from meridio.common import retry
from meridio.common.clock import FakeClock
from meridio.runtime.local import supervisor as supmod
from tests.conftest import eventually

PY = sys.executable


def _spec(tmp: pathlib.Path, code: str, *, component: str = "c", **kw: object) -> supmod.ProcessSpec:
    return supmod.ProcessSpec(pod="pod", component=component, argv=(PY, "-c", code),
                              log_path=tmp / "logs" / f"{component}.log", **kw)  # type: ignore[arg-type]


def _fast() -> retry.Backoff:
    return retry.Backoff(initial=0.05, cap=0.2)


async def test_a_process_runs_with_its_environment_and_writes_its_log(tmp_path: pathlib.Path) -> None:
    sup = supmod.Supervisor(backoff=_fast)
    spec = _spec(tmp_path, "import os,sys; print('hello', os.environ['X']); sys.stdout.flush(); import time; time.sleep(30)",
                 env={"X": "42"})
    assert sup.ensure(spec)
    pid = await sup.wait_started(spec.name)
    await eventually(lambda: "hello 42" in spec.log_path.read_text())
    [status] = sup.status()
    assert status.pid == pid and status.state is supmod.ProcessState.RUNNING and status.component == "c"
    await sup.stop_all()
    assert sup.status() == []


async def test_a_crashing_process_is_restarted_with_backoff_and_its_restarts_counted(tmp_path: pathlib.Path) -> None:
    sup = supmod.Supervisor(backoff=_fast)
    spec = _spec(tmp_path, "print('run'); raise SystemExit(3)")
    sup.ensure(spec)
    await eventually(lambda: sup.status()[0].restarts >= 3)
    status = sup.status()[0]
    assert status.exit_code == 3
    assert spec.log_path.read_text().count("run") >= 3
    await sup.stop_all()


async def test_a_process_without_restart_stays_exited(tmp_path: pathlib.Path) -> None:
    sup = supmod.Supervisor(backoff=_fast)
    spec = _spec(tmp_path, "raise SystemExit(0)", restart=False)
    sup.ensure(spec)
    await eventually(lambda: sup.status()[0].state is supmod.ProcessState.EXITED)
    await asyncio.sleep(0.2)
    assert sup.status()[0].restarts == 0 and sup.status()[0].exit_code == 0
    await sup.stop_all()


async def test_stop_sends_sigterm_and_the_process_exits_cleanly(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "terminated"
    code = ("import signal,sys,time,pathlib\n"
            f"signal.signal(signal.SIGTERM, lambda *a: (pathlib.Path({str(marker)!r}).write_text('x'), sys.exit(0)))\n"
            "print('up', flush=True)\n"
            "time.sleep(30)\n")
    sup = supmod.Supervisor(backoff=_fast)
    spec = _spec(tmp_path, code)
    sup.ensure(spec)
    await sup.wait_started(spec.name)
    await eventually(lambda: "up" in spec.log_path.read_text())
    await sup.stop(spec.name)
    assert marker.read_text() == "x"
    assert spec.name not in sup.names()


async def test_stop_kills_a_process_that_ignores_sigterm_after_the_timeout(tmp_path: pathlib.Path) -> None:
    code = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(30)"
    sup = supmod.Supervisor(backoff=_fast)
    spec = _spec(tmp_path, code, stop_timeout_s=0.3)
    sup.ensure(spec)
    pid = await sup.wait_started(spec.name)
    await eventually(lambda: "up" in spec.log_path.read_text())
    started = time.monotonic()
    await sup.stop(spec.name)
    assert time.monotonic() - started < 3
    assert supmod.process_start_time(pid) is None


async def test_ensure_keeps_an_identical_process_and_refuses_a_different_one(tmp_path: pathlib.Path) -> None:
    sup = supmod.Supervisor(backoff=_fast)
    spec = _spec(tmp_path, "import time; time.sleep(30)")
    assert sup.ensure(spec) is True
    pid = await sup.wait_started(spec.name)
    assert sup.ensure(spec) is False
    assert sup.status()[0].pid == pid
    with pytest.raises(ValueError, match="stop it first"):
        sup.ensure(_spec(tmp_path, "import time; time.sleep(31)"))
    await sup.stop_all()


async def test_a_pid_file_records_the_running_process_and_goes_with_it(tmp_path: pathlib.Path) -> None:
    sup = supmod.Supervisor(pid_dir=tmp_path / "pids", backoff=_fast)
    spec = _spec(tmp_path, "import time; time.sleep(30)")
    sup.ensure(spec)
    pid = await sup.wait_started(spec.name)
    pid_file = tmp_path / "pids" / "pod__c.pid"
    await eventually(pid_file.exists)
    assert pid_file.read_text().split() == [str(pid), str(supmod.process_start_time(pid)), spec.fingerprint]
    await sup.stop_all()
    assert not pid_file.exists()


async def test_children_left_by_a_crashed_process_are_killed_before_the_restart(tmp_path: pathlib.Path) -> None:
    child_pid_file = tmp_path / "child.pid"
    code = ("import subprocess,sys,pathlib\n"
            f"p = subprocess.Popen([{PY!r}, '-c', 'import time; time.sleep(30)'])\n"
            f"pathlib.Path({str(child_pid_file)!r}).write_text(str(p.pid))\n"
            "sys.exit(1)\n")
    sup = supmod.Supervisor(backoff=lambda: retry.Backoff(initial=5, cap=5))
    spec = _spec(tmp_path, code)
    sup.ensure(spec)
    await eventually(lambda: sup.status()[0].state is supmod.ProcessState.BACKOFF)
    child = int(child_pid_file.read_text())
    await eventually(lambda: supmod.process_start_time(child) is None or _zombie(child))
    await sup.stop_all()


def _zombie(pid: int) -> bool:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_leftovers_are_stopped_only_when_the_recorded_start_time_matches(tmp_path: pathlib.Path) -> None:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    ours = subprocess.Popen([PY, "-c", "import time; time.sleep(30)"], start_new_session=True)
    other = subprocess.Popen([PY, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        (pid_dir / "a__x.pid").write_text(f"{ours.pid} {supmod.process_start_time(ours.pid)}\n")
        (pid_dir / "b__y.pid").write_text(f"{other.pid} {supmod.process_start_time(other.pid) + 1}\n")  # type: ignore[operator]
        stopped = supmod.stop_leftovers(pid_dir, timeout_s=2)
        assert stopped == [ours.pid]
        assert ours.wait(5) == -signal.SIGTERM
        assert other.poll() is None
        assert list(pid_dir.iterdir()) == []
    finally:
        for p in (ours, other):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()


async def test_signal_reaches_a_running_process_and_it_is_restarted(tmp_path: pathlib.Path) -> None:
    sup = supmod.Supervisor(backoff=_fast)
    spec = _spec(tmp_path, "import time; time.sleep(30)")
    sup.ensure(spec)
    first = await sup.wait_started(spec.name)
    assert sup.signal(spec.name, signal.SIGKILL)
    await eventually(lambda: sup.status()[0].pid not in (None, first))
    assert sup.status()[0].restarts == 1
    await sup.stop_all()


@contextlib.contextmanager
def _orphan(tmp: pathlib.Path, spec: supmod.ProcessSpec, fingerprint: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A process left running by a previous supervisor, with its pid file; killed at the end if still there."""
    proc = subprocess.Popen(list(spec.argv), start_new_session=True)
    (tmp / "pids").mkdir(exist_ok=True)
    (tmp / "pids" / "pod__c.pid").write_text(
        f"{proc.pid} {supmod.process_start_time(proc.pid)} {fingerprint or spec.fingerprint}\n")
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_new_supervisor_adopts_a_running_process_with_the_same_spec_instead_of_restarting_it(
        tmp_path: pathlib.Path) -> None:
    spec = _spec(tmp_path, "import time; time.sleep(30)")
    with _orphan(tmp_path, spec) as orphan:
        sup = supmod.Supervisor(pid_dir=tmp_path / "pids", backoff=_fast)
        assert sup.adopt() == ["pod/c"]
        assert sup.ensure(spec) is False
        assert await sup.wait_started(spec.name) == orphan.pid
        assert sup.status()[0].state is supmod.ProcessState.RUNNING
        orphan.kill()
        orphan.wait()
        await eventually(lambda: sup.status()[0].pid not in (None, orphan.pid))  # it died: restarted as a child
        assert sup.status()[0].restarts == 1
        await sup.stop_all()


async def test_an_adopted_process_whose_spec_changed_is_replaced(tmp_path: pathlib.Path) -> None:
    spec = _spec(tmp_path, "import time; time.sleep(30)")
    with _orphan(tmp_path, spec, fingerprint="0" * 16) as orphan:
        sup = supmod.Supervisor(pid_dir=tmp_path / "pids", backoff=_fast)
        sup.adopt()
        assert sup.ensure(spec) is True
        assert orphan.wait(5) == -signal.SIGTERM
        assert await sup.wait_started(spec.name) != orphan.pid
        await sup.stop_all()


async def test_adopted_processes_nobody_claims_are_stopped(tmp_path: pathlib.Path) -> None:
    spec = _spec(tmp_path, "import time; time.sleep(30)")
    with _orphan(tmp_path, spec) as orphan:
        sup = supmod.Supervisor(pid_dir=tmp_path / "pids", backoff=_fast)
        sup.adopt()
        assert sup.stop_unclaimed() == ["pod/c"]
        assert orphan.wait(5) == -signal.SIGTERM
        assert list((tmp_path / "pids").iterdir()) == []


async def test_on_restart_is_called_for_a_process_started_again_but_not_for_its_first_start(
        tmp_path: pathlib.Path) -> None:
    restarted: list[str] = []
    sup = supmod.Supervisor(backoff=_fast, on_restart=lambda spec: restarted.append(spec.name))
    spec = _spec(tmp_path, "import time; time.sleep(30)")
    sup.ensure(spec)
    first = await sup.wait_started(spec.name)
    assert restarted == []
    assert sup.signal(spec.name, signal.SIGKILL)
    await eventually(lambda: sup.status()[0].pid not in (None, first))
    assert restarted == [spec.name]
    await sup.stop_all()


async def test_restart_misplaced_leaves_processes_in_their_own_namespace_alone(tmp_path: pathlib.Path) -> None:
    sup = supmod.Supervisor(backoff=_fast)
    spec = _spec(tmp_path, "import time; time.sleep(30)")  # netns None: the supervisor's own namespace
    sup.ensure(spec)
    pid = await sup.wait_started(spec.name)
    assert sup.restart_misplaced() == []
    assert sup.status()[0].pid == pid and sup.status()[0].restarts == 0
    await sup.stop_all()


async def test_a_process_that_exits_at_every_start_is_reported_failed_with_its_last_line_and_still_retried(
        tmp_path: pathlib.Path) -> None:
    code = ("import sys; print('{\"severity\": \"info\", \"message\": \"starting\"}'); "
            "print('meridio run ipam: IPAM registry /x.db is corrupt; to recover, restore a backup', file=sys.stderr); "
            "sys.exit(1)")
    # The fake clock never moves: every run is shorter than stable_after_s, whatever the machine's speed.
    sup = supmod.Supervisor(backoff=_fast, fail_after=3, clock=FakeClock())
    spec = _spec(tmp_path, code)
    sup.ensure(spec)
    await eventually(lambda: sup.status()[0].restarts >= 2)
    assert not sup.status()[0].failed
    await eventually(lambda: sup.status()[0].failed)
    status = sup.status()[0]
    assert status.quick_exits >= 3 and status.exit_code == 1
    assert status.last_error == "meridio run ipam: IPAM registry /x.db is corrupt; to recover, restore a backup"
    restarts = status.restarts
    await eventually(lambda: sup.status()[0].restarts > restarts)  # still retried (at the capped delay)
    await sup.stop_all()


async def test_a_failed_process_that_then_stays_up_is_no_longer_failed(tmp_path: pathlib.Path) -> None:
    count = tmp_path / "starts"
    code = ("import pathlib, sys, time\n"
            f"p = pathlib.Path({str(count)!r}); n = int(p.read_text()) if p.exists() else 0; p.write_text(str(n + 1))\n"
            "if n < 3:\n    print('not yet', n, flush=True); sys.exit(2)\n"
            "print('up', flush=True); time.sleep(30)\n")
    sup = supmod.Supervisor(backoff=_fast, fail_after=3, stable_after_s=0.5)
    spec = _spec(tmp_path, code)
    sup.ensure(spec)
    await eventually(lambda: sup.status()[0].failed)
    assert sup.status()[0].last_error == "not yet 2"
    await eventually(lambda: sup.status()[0].state is supmod.ProcessState.RUNNING and not sup.status()[0].failed)
    assert sup.status()[0].quick_exits == 0
    await sup.stop_all()


def test_the_last_line_is_the_error_of_a_json_line_and_is_bounded(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "c.log"
    log.write_text('old run\n{"severity": "critical", "message": "startFailed", "error": "no good"}\n\n')
    assert supmod.last_line(log) == "no good"
    assert supmod.last_line(log, offset=log.stat().st_size) == ""
    log.write_text("x" * 1000 + "\n")
    assert supmod.last_line(log) == "x" * supmod.LAST_LINE_MAX
    assert supmod.last_line(tmp_path / "missing.log") == ""
