"""BIRD 2 as a child process, and an asyncio client of its control socket.

:class:`BirdProcess` starts ``bird -f`` (foreground, so it stays our child and we see it die), optionally
inside a network namespace, copies its stderr into our log, and stops it by pid. The child gets
``PR_SET_PDEATHSIG`` (through util-linux ``setpriv --pdeathsig``, so no Python code runs between fork and
exec while gRPC threads exist) so a BIRD never outlives a frontend killed with SIGKILL.

:class:`BirdControl` speaks BIRD's control protocol over the unix socket with the sans-IO parser of
:mod:`meridio.bird.birdc`: one connection, commands serialised by a lock, no ``birdc`` subprocess per
query. :meth:`BirdControl.notices` turns a connection into a stream of BIRD log lines (``echo all``),
which lets the frontend react to a session going down without waiting for its next poll.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import shutil
import signal
import time
from collections import deque
from collections.abc import AsyncIterator

from meridio.bird import birdc
from meridio.common import log as logmod
from meridio.kernel import netns as netnsmod

__all__ = ["BirdStartError", "BirdConnectionError", "BirdProcess", "BirdControl", "connect"]


class BirdStartError(RuntimeError):
    """BIRD exited or never opened its control socket; carries BIRD's own last words."""


class BirdConnectionError(ConnectionError):
    """The control socket is gone (BIRD stopped or restarted)."""


class BirdProcess:
    """One BIRD daemon we own. ``start()`` returns once its control socket answers."""

    def __init__(self, config: str | os.PathLike[str], socket: str | os.PathLike[str], *,
                 binary: str = "bird", netns: str | None = None, log: logmod.Logger = logmod.null) -> None:
        self.config = pathlib.Path(config)
        self.socket = pathlib.Path(socket)
        self.binary = binary
        self.netns = netns
        self.log = log
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr_tail: deque[str] = deque(maxlen=20)
        self._stderr_task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def argv(self) -> list[str]:
        bird = [self.binary, "-f", "-c", str(self.config), "-s", str(self.socket)]
        setpriv = shutil.which("setpriv")
        return netnsmod.exec_argv(self.netns, [setpriv, "--pdeathsig", "TERM", *bird] if setpriv else bird)

    async def start(self, timeout: float = 10.0) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        self._stderr_tail.clear()
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv(), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        self._stderr_task = asyncio.create_task(self._copy_stderr(self._proc))
        self.log.info("birdStarted", pid=self._proc.pid, config=str(self.config))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.returncode is not None:
                break
            with contextlib.suppress(OSError, BirdConnectionError, birdc.ProtocolError):
                control = await connect(self.socket, timeout=1.0)
                await control.close()
                return
            await asyncio.sleep(0.02)
        await self.stop()
        raise BirdStartError(self.last_words() or "BIRD did not open its control socket in time")

    def last_words(self) -> str:
        return " | ".join(self._stderr_tail)

    async def wait(self) -> int:
        """Until BIRD exits; returns its exit status."""
        assert self._proc is not None, "not started"
        code = await self._proc.wait()
        if self._stderr_task is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._stderr_task), 1.0)
        return code

    async def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM our BIRD (by pid), SIGKILL if it lingers; idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            self.log.info("birdStopped", pid=proc.pid, exitCode=proc.returncode)
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr_task
            self._stderr_task = None
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()

    def signal(self, sig: int) -> None:
        """Send ``sig`` to our BIRD (tests freeze it with SIGSTOP)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(sig)

    async def _copy_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self._stderr_tail.append(text)
            self.log.info("birdLog", line=text)


class BirdControl:
    """An open control-socket connection. Use :func:`connect`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = birdc.ReplyParser()
        self._events: deque[birdc.Reply | birdc.Notice] = deque()
        self._lock = asyncio.Lock()
        self.notices_seen: deque[birdc.Notice] = deque(maxlen=100)

    async def _next(self) -> birdc.Reply | birdc.Notice:
        while not self._events:
            try:
                data = await self._reader.read(65536)
            except OSError as exc:
                raise BirdConnectionError(str(exc)) from exc
            if not data:
                raise BirdConnectionError("BIRD closed the control socket")
            self._events.extend(self._parser.feed(data))
        return self._events.popleft()

    async def _reply(self) -> birdc.Reply:
        while True:
            event = await self._next()
            if isinstance(event, birdc.Reply):
                return event
            self.notices_seen.append(event)

    async def command(self, command: str, timeout: float = 10.0) -> birdc.Reply:
        """Send one command and return BIRD's complete reply (errors are in the reply, not raised)."""
        async with self._lock:
            self._writer.write(birdc.encode_command(command))
            try:
                await self._writer.drain()
                return await asyncio.wait_for(self._reply(), timeout)
            except (TimeoutError, OSError) as exc:
                self._writer.close()
                raise BirdConnectionError(f"{command!r}: {exc!r}") from exc

    async def show_protocols(self, pattern: str | None = None, *, details: bool = False,
                             timeout: float = 10.0) -> list[birdc.ProtocolInfo]:
        cmd = "show protocols" + (" all" if details else "") + (f" {birdc.quote(pattern)}" if pattern else "")
        return birdc.protocols(await self.command(cmd, timeout))

    async def show_bfd_sessions(self, timeout: float = 10.0) -> list[birdc.BfdSession]:
        return birdc.bfd_sessions(await self.command("show bfd sessions", timeout))

    async def configure(self, path: str | os.PathLike[str], *, check: bool = False) -> birdc.ConfigureResult:
        verb = "configure check" if check else "configure"
        return birdc.configure_result(await self.command(f"{verb} {birdc.quote(str(path))}", timeout=30.0))

    async def notices(self) -> AsyncIterator[birdc.Notice]:
        """Switch this connection to ``echo all`` and yield BIRD's log lines as they come."""
        reply = await self.command("echo all")
        if reply.is_error:
            raise birdc.CommandError(reply.code, reply.error)
        while True:
            event = await self._next()
            if isinstance(event, birdc.Notice):
                yield event

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


async def connect(path: str | os.PathLike[str], timeout: float = 5.0) -> BirdControl:
    """Open the control socket and consume BIRD's greeting (``0001 BIRD x.y.z ready.``)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
    except (TimeoutError, OSError) as exc:
        raise BirdConnectionError(f"{path}: {exc!r}") from exc
    control = BirdControl(reader, writer)
    try:
        hello = await asyncio.wait_for(control._reply(), timeout)
    except (TimeoutError, BirdConnectionError) as exc:
        await control.close()
        raise BirdConnectionError(f"{path}: no greeting ({exc!r})") from exc
    if hello.code != 1:
        await control.close()
        raise BirdConnectionError(f"{path}: unexpected greeting {hello.text!r}")
    return control
