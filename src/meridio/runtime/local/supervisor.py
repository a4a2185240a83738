"""The process supervisor of the local runtime: one OS process per container, restarted with backoff.

Each :class:`ProcessSpec` names a process (``<pod>/<component>``), its argv, the network namespace it
runs in (through ``ip netns exec``, which execs the command: the pid we hold is the component's own),
its environment and its log file. The supervisor owns one guarded task per process that starts it,
waits for its exit and restarts it after a backoff (reset once the process stayed up long enough).
A process that keeps exiting soon after its start is reported *failed* (:mod:`.crashloop`), with the
last line it wrote, while it is still retried at the capped delay.
Stopping sends SIGTERM, then SIGKILL to the process group after a timeout. Only processes started here
are ever signalled, always by pid (or by the process group the supervisor created for them).

Pid files (``<pid_dir>/<pod>__<component>.pid``: pid, kernel start time, spec fingerprint) survive the
supervisor. A new supervisor :meth:`~Supervisor.adopt`\\ s the processes still running (as Kubernetes
keeps pods running while its control plane restarts): :meth:`~Supervisor.ensure` with the same spec
takes them over (watched through a pidfd) instead of starting them again; :meth:`~Supervisor.
stop_unclaimed` stops the ones no longer wanted; :func:`stop_leftovers` stops them all (``down``). A
pid is only signalled if its kernel start time still matches the recorded one.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import hashlib
import json
import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Callable, Mapping

from meridio.common import clock as clockmod
from meridio.common import log as logmod
from meridio.common import procfs, retry, tasks
from meridio.common.procfs import start_time as process_start_time
from meridio.kernel import netns as netnsmod
from meridio.runtime.local import crashloop

__all__ = [
    "LAST_LINE_MAX", "ProcessSpec", "ProcessState", "ProcessStatus", "Supervisor", "last_line", "log_tail",
    "process_start_time",
    "spawn_detached", "stop_leftovers",
]

LAST_LINE_MAX = 300
"""Characters of a process's last output line kept for its status."""


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
    pod: str
    component: str
    argv: tuple[str, ...]
    log_path: pathlib.Path
    netns: str | None = None
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    restart: bool = True
    """Restart after an exit (with backoff). False: an exit leaves the process ``exited``."""
    stop_timeout_s: float = 10.0

    @property
    def name(self) -> str:
        return f"{self.pod}/{self.component}"

    @property
    def fingerprint(self) -> str:
        """Changes iff the process would run differently (argv, namespace or environment)."""
        blob = json.dumps([self.argv, self.netns, sorted(self.env.items())]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class ProcessState(str, enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"
    EXITED = "exited"


@dataclasses.dataclass(frozen=True)
class ProcessStatus:
    name: str
    pod: str
    component: str
    pid: int | None
    state: ProcessState
    restarts: int
    exit_code: int | None
    since: float
    """Wall-clock time of the last state change."""
    log_path: str
    failed: bool = False
    """It exited ``quick_exits`` times in a row soon after starting (still retried, at the capped delay)."""
    quick_exits: int = 0
    last_error: str = ""
    """The last line the process wrote before its last exit (empty: it has not exited)."""

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        d["state"] = self.state.value
        return d


class _Handle:
    """A running process: our child (asyncio) or an adopted one (watched through a pidfd)."""

    def __init__(self, pid: int, child: asyncio.subprocess.Process | None = None) -> None:
        self.pid = pid
        self._child = child
        self._exited: asyncio.Future[int | None] | None = None
        if child is None:
            self._watch_pidfd()

    def _watch_pidfd(self) -> None:
        loop = asyncio.get_running_loop()
        self._exited = loop.create_future()
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            self._exited.set_result(None)
            return

        def gone() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            if not self._exited.done():  # type: ignore[union-attr]
                self._exited.set_result(None)  # type: ignore[union-attr]
        loop.add_reader(fd, gone)

    @property
    def running(self) -> bool:
        if self._child is not None:
            return self._child.returncode is None
        return self._exited is not None and not self._exited.done()

    async def wait(self) -> int | None:
        """The exit code (None for an adopted process: it is not our child)."""
        if self._child is not None:
            return await self._child.wait()
        assert self._exited is not None
        return await asyncio.shield(self._exited)

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)


class _Entry:
    def __init__(self, spec: ProcessSpec, policy: crashloop.CrashLoop) -> None:
        self.spec = spec
        self.policy = policy
        self.last_error = ""
        self.handle: _Handle | None = None
        self.state = ProcessState.STARTING
        self.restarts = 0
        self.exit_code: int | None = None
        self.since = time.time()
        self.stopping = asyncio.Event()
        self.started = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def set_state(self, state: ProcessState) -> None:
        self.state, self.since = state, time.time()

    def status(self) -> ProcessStatus:
        pid = self.handle.pid if self.handle and self.state in (ProcessState.RUNNING, ProcessState.STOPPING) else None
        return ProcessStatus(self.spec.name, self.spec.pod, self.spec.component, pid, self.state, self.restarts,
                             self.exit_code, self.since, str(self.spec.log_path), failed=self.policy.failed,
                             quick_exits=self.policy.quick_exits, last_error=self.last_error)


@dataclasses.dataclass(frozen=True)
class _Adopted:
    pid: int
    start: int
    fingerprint: str
    pid_file: pathlib.Path


class Supervisor:
    """Starts, restarts and stops processes; one task per process, all owned by this object."""

    def __init__(self, *, pid_dir: pathlib.Path | None = None, log: logmod.Logger = logmod.null,
                 backoff: Callable[[], retry.Backoff] = lambda: retry.Backoff(initial=0.5, cap=30.0),
                 stable_after_s: float = 10.0, fail_after: int = 5, clock: clockmod.Clock | None = None,
                 on_restart: Callable[[ProcessSpec], None] | None = None) -> None:
        """``backoff`` makes each process's restart delays; a run of ``stable_after_s`` resets them, and
        ``fail_after`` exits in a row, each sooner than that after its start, report it failed."""
        self._entries: dict[str, _Entry] = {}
        self._on_restart = on_restart
        """Called after a process was started again (a crash, or :meth:`restart_misplaced`)."""
        self._adopted: dict[str, _Adopted] = {}
        self._pid_dir = pid_dir
        self._log = log
        self._backoff = backoff
        self._stable_after = stable_after_s
        self._fail_after = fail_after
        self._clock = clock or clockmod.SystemClock()
        if pid_dir:
            pid_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ public API

    def ensure(self, spec: ProcessSpec) -> bool:
        """Run ``spec``: start it if absent, keep it if identical. Returns True if it was started.

        An adopted process with the same name and fingerprint is taken over (not started: False). A
        process of the same name with a different fingerprint must be stopped first (:meth:`stop`);
        ensure refuses to silently replace it.
        """
        current = self._entries.get(spec.name)
        if current is not None:
            if current.spec.fingerprint != spec.fingerprint:
                raise ValueError(f"process {spec.name} runs with another spec: stop it first")
            return False
        entry = _Entry(spec, crashloop.CrashLoop(self._backoff(), stable_after_s=self._stable_after,
                                                 fail_after=self._fail_after, clock=self._clock))
        self._entries[spec.name] = entry
        adopted = self._claim(spec)
        entry.task = asyncio.create_task(
            tasks.guard(self._run(entry, adopted), f"supervise:{spec.name}", self._log, expect_end=True))
        return adopted is None

    def get(self, name: str) -> ProcessSpec | None:
        entry = self._entries.get(name)
        return entry.spec if entry else None

    def names(self) -> set[str]:
        return set(self._entries)

    def status(self) -> list[ProcessStatus]:
        return [e.status() for _, e in sorted(self._entries.items())]

    async def wait_started(self, name: str, timeout: float = 10.0) -> int:
        """Wait until the process has been spawned (or adopted) at least once; return its pid."""
        entry = self._entries[name]
        await asyncio.wait_for(entry.started.wait(), timeout)
        assert entry.handle is not None
        return entry.handle.pid

    async def stop(self, name: str) -> None:
        entry = self._entries.get(name)
        if entry is None:
            return
        entry.stopping.set()
        await self._terminate(entry)
        if entry.task:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await entry.task
        self._entries.pop(name, None)

    async def stop_many(self, names: list[str]) -> None:
        await asyncio.gather(*(self.stop(n) for n in names))

    async def stop_all(self) -> None:
        await self.stop_many(list(self._entries))
        self.stop_unclaimed()

    def signal(self, name: str, sig: int) -> bool:
        """Send ``sig`` to a running process (for tests and chaos: SIGKILL a component)."""
        entry = self._entries.get(name)
        if entry is None or entry.handle is None or not entry.handle.running:
            return False
        with contextlib.suppress(ProcessLookupError):
            entry.handle.signal(sig)
            return True
        return False

    def restart_misplaced(self) -> list[str]:
        """Restart the running processes whose namespace was deleted (and maybe made again) under them.

        A process keeps a deleted namespace alive: it would go on running, unreachable, in an orphan copy
        while ``up`` builds the named one anew. Killing its group lets the per-process task start it again,
        in the namespace that now carries the name. Returns the names of the processes restarted.
        """
        misplaced = [e for e in self._entries.values()
                     if e.handle is not None and e.handle.running and not e.stopping.is_set()
                     and not _entering_netns(e.handle.pid, e.spec.netns)
                     and not _in_netns(e.handle.pid, e.spec.netns)]
        for entry in misplaced:
            assert entry.handle is not None
            self._log.info("processReplaced", process=entry.spec.name, pid=entry.handle.pid,
                           reason="namespaceReplaced")
            entry.policy.replaced()
            _kill_group(entry.handle.pid)
        return sorted(e.spec.name for e in misplaced)

    # ------------------------------------------------------------------ adoption

    def adopt(self) -> list[str]:
        """Remember the processes of this pid dir that still run, for :meth:`ensure` to take over."""
        for path in sorted(self._pid_dir.glob("*.pid")) if self._pid_dir else []:
            fields = _read_pid_file(path)
            if fields is None or process_start_time(fields[0]) != fields[1]:
                path.unlink(missing_ok=True)
                continue
            pod, _, component = path.stem.partition("__")
            self._adopted[f"{pod}/{component}"] = _Adopted(fields[0], fields[1], fields[2], path)
        return sorted(self._adopted)

    def stop_unclaimed(self) -> list[str]:
        """Stop adopted processes that no :meth:`ensure` took over (no longer wanted)."""
        names = sorted(self._adopted)
        victims = []
        for name in names:
            found = self._adopted.pop(name)
            if process_start_time(found.pid) == found.start:
                self._log.info("processStopped", process=name, pid=found.pid, reason="notWanted")
                victims.append(found.pid)
            found.pid_file.unlink(missing_ok=True)
        _terminate_groups(victims)
        return names

    def _claim(self, spec: ProcessSpec) -> _Adopted | None:
        found = self._adopted.pop(spec.name, None)
        if found is None or process_start_time(found.pid) != found.start:
            return None
        reason = "specChanged" if found.fingerprint != spec.fingerprint else \
            "namespaceReplaced" if not _in_netns(found.pid, spec.netns) else None
        if reason:
            self._log.info("processReplaced", process=spec.name, pid=found.pid, reason=reason)
            _terminate_groups([found.pid])
            return None
        return found

    # ------------------------------------------------------------------ the per-process task

    async def _run(self, entry: _Entry, adopted: _Adopted | None) -> None:
        log = self._log.bind(process=entry.spec.name)
        while not entry.stopping.is_set():
            entry.policy.started()
            offset = _size(entry.spec.log_path)
            try:
                entry.handle = _Handle(adopted.pid) if adopted else await self._spawn(entry.spec)
            except OSError as exc:
                log.error("processSpawnFailed", error=str(exc))
                entry.exit_code, entry.last_error = None, f"cannot start: {exc}"[:LAST_LINE_MAX]
            else:
                entry.set_state(ProcessState.RUNNING)
                entry.started.set()
                if adopted is None:
                    self._write_pid(entry)
                log.info("processAdopted" if adopted else "processStarted", pid=entry.handle.pid,
                         restarts=entry.restarts)
                if adopted is None and entry.restarts and self._on_restart is not None:
                    self._on_restart(entry.spec)
                adopted = None
                entry.exit_code = await self._wait_exit(entry)
                self._remove_pid(entry)
                _kill_group(entry.handle.pid)  # what the component left behind (e.g. its BIRD), as a pod restart
                if entry.stopping.is_set():
                    break
                entry.last_error = last_line(entry.spec.log_path, offset)
                log.warning("processExited", pid=entry.handle.pid, exit_code=entry.exit_code, error=entry.last_error)
            if not entry.spec.restart:
                entry.set_state(ProcessState.EXITED)
                return
            was_failed = entry.policy.failed
            delay = entry.policy.exited()
            if entry.policy.failed and not was_failed:
                log.error("processFailed", reason="exitsSoonAfterStart", exits=entry.policy.quick_exits,
                          retry_s=delay, error=entry.last_error)
            entry.restarts += 1
            entry.set_state(ProcessState.BACKOFF)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(entry.stopping.wait(), delay)
        entry.set_state(ProcessState.STOPPED)

    async def _wait_exit(self, entry: _Entry) -> int | None:
        """Wait for the process to exit; once it has run ``stable_after_s``, tell the policy it is healthy."""
        assert entry.handle is not None
        exited = asyncio.ensure_future(entry.handle.wait())
        try:
            done, _ = await asyncio.wait({exited}, timeout=self._stable_after)
            if not done:
                if entry.policy.failed:
                    self._log.info("processRecovered", process=entry.spec.name, pid=entry.handle.pid)
                entry.policy.stable()
            return await exited
        finally:
            exited.cancel()

    async def _spawn(self, spec: ProcessSpec) -> _Handle:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.log_path, "ab") as out:  # noqa: ASYNC230 (a local file, opened once per start)
            child = await asyncio.create_subprocess_exec(
                *netnsmod.exec_argv(spec.netns, spec.argv), stdin=asyncio.subprocess.DEVNULL, stdout=out,
                stderr=asyncio.subprocess.STDOUT, env={**os.environ, **spec.env}, start_new_session=True)
        return _Handle(child.pid, child)

    async def _terminate(self, entry: _Entry) -> None:
        handle = entry.handle
        if handle is None or not handle.running:
            return
        entry.set_state(ProcessState.STOPPING)
        with contextlib.suppress(ProcessLookupError):
            handle.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(handle.wait(), entry.spec.stop_timeout_s)
        except TimeoutError:
            self._log.warning("processKilled", process=entry.spec.name, pid=handle.pid, reason="stopTimeout")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(handle.pid, signal.SIGKILL)
            await handle.wait()
        _kill_group(handle.pid)

    # ------------------------------------------------------------------ pid files

    def _pid_file(self, spec: ProcessSpec) -> pathlib.Path | None:
        if self._pid_dir is None:
            return None
        return self._pid_dir / f"{spec.pod}__{spec.component}.pid"

    def _write_pid(self, entry: _Entry) -> None:
        path = self._pid_file(entry.spec)
        if path is None or entry.handle is None:
            return
        start = process_start_time(entry.handle.pid)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{entry.handle.pid} {start} {entry.spec.fingerprint}\n")
        tmp.replace(path)

    def _remove_pid(self, entry: _Entry) -> None:
        path = self._pid_file(entry.spec)
        if path is not None:
            path.unlink(missing_ok=True)


def _size(path: pathlib.Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def log_tail(path: pathlib.Path, offset: int = 0, *, tail_bytes: int = 16384
             ) -> list[tuple[str, dict[str, object] | None]]:
    """The non-empty lines written to ``path`` after ``offset`` (at most its last ``tail_bytes``), each with
    its JSON record when it is one of the components' log lines; empty if the file cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(max(offset, _size(path) - tail_bytes))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    out: list[tuple[str, dict[str, object] | None]] = []
    for line in (ln.strip() for ln in text.splitlines()):
        if not line:
            continue
        record = None
        with contextlib.suppress(ValueError):
            parsed = json.loads(line)
            record = parsed if isinstance(parsed, dict) else None
        out.append((line, record))
    return out


def last_line(path: pathlib.Path, offset: int = 0) -> str:
    """The last non-empty line written to ``path`` after ``offset`` (a JSON log line: its ``error``, else
    its ``message``), at most :data:`LAST_LINE_MAX` characters; empty if there is none."""
    lines = log_tail(path, offset)
    if not lines:
        return ""
    line, record = lines[-1]
    if record is not None and (record.get("error") or record.get("message")):
        line = str(record.get("error") or record.get("message"))
    return line[:LAST_LINE_MAX]


def _read_pid_file(path: pathlib.Path) -> tuple[int, int, str] | None:
    try:
        fields = path.read_text().split()
        return int(fields[0]), int(fields[1]), fields[2] if len(fields) > 2 else ""
    except (OSError, ValueError, IndexError):
        return None


def _entering_netns(pid: int, netns: str | None) -> bool:
    """Whether ``pid`` is still ``ip netns exec`` on its way into ``netns`` (not yet the component)."""
    if netns is None:
        return False
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip() == "ip"
    except OSError:
        return False


def _in_netns(pid: int, netns: str | None) -> bool:
    """Whether ``pid`` runs in the namespace named ``netns`` now (not in one deleted and made again)."""
    try:
        inode = os.stat(f"/proc/{pid}/ns/net").st_ino
        return inode == (os.stat(os.path.join(netnsmod.NETNS_DIR, netns)).st_ino if netns else
                         os.stat("/proc/self/ns/net").st_ino)
    except OSError:
        return False


def _kill_group(pgid: int) -> None:
    """SIGKILL what remains of the process group we created for a process that has been reaped.

    Safe: the kernel does not hand out a pid that is still in use as a process group id, so the group
    is ours for as long as it has members.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _terminate_groups(pids: list[int], timeout_s: float = 5.0) -> None:
    """SIGTERM verified process groups, SIGKILL what is left of them after ``timeout_s`` (blocking).

    The groups were verified ours (pid and start time) just before; pid space wraps far slower than
    this timeout.
    """
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(procfs.running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        _kill_group(pid)


def spawn_detached(argv: list[str], log_path: pathlib.Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session of its own, output appended to ``log_path``, not waited for: the way
    ``meridio up`` starts the runtime daemon, which outlives the CLI."""
    with open(log_path, "ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_leftovers(pid_dir: pathlib.Path, log: logmod.Logger = logmod.null, timeout_s: float = 5.0) -> list[int]:
    """Stop the processes recorded in ``pid_dir`` that are still the very processes recorded.

    A pid is signalled only if its kernel start time matches the recorded one (so a reused pid is never
    touched): SIGTERM to its process group (the supervisor made every process a group leader), then
    SIGKILL to the group after ``timeout_s``.
    """
    victims: list[int] = []
    for path in sorted(pid_dir.glob("*.pid")) if pid_dir.is_dir() else []:
        fields = _read_pid_file(path)
        if fields is not None and process_start_time(fields[0]) == fields[1]:
            victims.append(fields[0])
            log.info("leftoverStopped", pid=fields[0], pidfile=path.name)
        path.unlink(missing_ok=True)
    _terminate_groups(victims, timeout_s)
    return victims
