"""``kubectl port-forward`` for the runtime daemon: a unix socket relayed to a TCP port inside a pod.

The daemon lives in the host's namespace, off the pod network, yet reads each trench's NSP (readiness,
``meridio status``). A :class:`PortForward` listens on a unix socket in the state directory; each
connection is relayed byte for byte to ``host:port`` as seen from inside the pod's namespace
(:func:`meridio.kernel.netns.connect`). It carries the TLS session unchanged: the NSP checks the
runtime's certificate and the runtime checks the NSP's, end to end. One task owns the server; the relays
are its children and end with it. Connections are opened by a thread of the forward's own (not the
loop's default executor, which metrics scrapes and kernel work keep busy: a status read must not queue
behind them).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import pathlib

from meridio.common import log as logmod
from meridio.kernel import localsock, netns

__all__ = ["PortForward"]

_CONNECT_TIMEOUT_S = 3.0


class PortForward:
    def __init__(self, path: pathlib.Path, netns_name: str, host: str, port: int, *,
                 log: logmod.Logger = logmod.null) -> None:
        self.path, self.netns_name, self.host, self.port = path, netns_name, host, port
        self._log = log.bind(forward=str(path), netns=netns_name)
        self._server: asyncio.AbstractServer | None = None
        self._relays: set[asyncio.Task[None]] = set()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="port-forward")

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket of a previous daemon
        self._server = await asyncio.start_unix_server(self._accept, path=str(self.path))
        self.path.chmod(0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._relays):
            task.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        try:
            await self._relay(reader, writer)
        finally:
            self._relays.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = await asyncio.get_running_loop().run_in_executor(
                self._pool, netns.connect, self.netns_name, self.host, self.port, _CONNECT_TIMEOUT_S)
        except OSError as exc:
            self._log.debug("portForwardConnectFailed", error=str(exc))
            writer.close()
            return
        sock.setblocking(False)
        up_reader, up_writer = await asyncio.open_connection(sock=sock)
        try:
            await asyncio.gather(localsock.pump(reader, up_writer), localsock.pump(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()
