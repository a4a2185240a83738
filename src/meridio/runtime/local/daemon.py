"""The runtime daemon ``meridio up`` starts: owns the controller, serves the CLI on a unix socket.

``python -m meridio.runtime.local.daemon --state-dir DIR`` (detached by ``meridio up``; pid file
``DIR/runtime.pid``, log ``DIR/logs/runtime.log``). The environment is the copy ``meridio up`` left in
``DIR/environment.yaml`` (relative resource paths resolve against ``DIR/environment.base``).

It serves the API of :mod:`meridio.runtime.local.protocol` on ``DIR/runtime.sock`` (mode 0600): one
request per connection, dispatched through one table of handlers, one per :class:`~protocol.Op`.

SIGTERM/SIGINT: stop every process (namespaces stay; the next ``meridio up`` resumes) and exit 0.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import sys
import time
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from meridio.api import resources
from meridio.common import log as logmod
from meridio.common import tasks
from meridio.common import tls as tlsmod
from meridio.common.bounds import quote
from meridio.common.durations import DurationError, parse_duration
from meridio.common.settings import parse_bool
from meridio.runtime.local import client, pki, readiness
from meridio.runtime.local import environment as envmod
from meridio.runtime.local import protocol as proto
from meridio.runtime.local.controller import Controller, ControllerError, Progress
from meridio.runtime.local.layout import StateLayout
from meridio.runtime.local.monitor import Monitor, MonitorError
from meridio.runtime.local.store import StateStoreError
from meridio.runtime.local.supervisor import process_start_time

__all__ = ["Server", "main", "serve"]

R = TypeVar("R")


class Server:
    """Serves :mod:`~meridio.runtime.local.protocol` requests, one per connection, through one table."""

    def __init__(self, ctl: Controller, log: logmod.Logger) -> None:
        self.ctl, self.log = ctl, log
        self.stop = asyncio.Event()
        self.exit_after_reply = False
        self.handlers: dict[proto.Op, Callable[[Any, Progress], Awaitable[Any]]] = {
            proto.Op.PING: self._ping, proto.Op.UP: self._up, proto.Op.WAIT: self._wait,
            proto.Op.APPLY: self._apply, proto.Op.DELETE: self._delete, proto.Op.SCALE: self._scale,
            proto.Op.STATUS: self._status, proto.Op.RESOURCES: self._resources, proto.Op.DOWN: self._down,
            proto.Op.ROTATE: self._rotate,
        }

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def write(msg: dict[str, Any]) -> None:  # buffered in order; progress never waits for the client
            if not writer.is_closing():
                writer.write((json.dumps(msg) + "\n").encode())

        async def send(msg: dict[str, Any]) -> None:
            write(msg)
            with contextlib.suppress(ConnectionError):
                await writer.drain()

        try:
            line = await reader.readline()
            request = proto.decode_request(json.loads(line or b"{}"))
            result = await self.dispatch(request, lambda text: write({"progress": text}))
            await send({"ok": True, "result": proto.encode(result)})
        except ControllerError as exc:
            await send({"ok": False, "error": str(exc)})
        except ValueError as exc:  # proto.ProtocolError and JSON errors
            await send({"ok": False, "error": f"bad request: {exc}"})
        except Exception as exc:  # one clear line to the user, the traceback in the daemon log
            self.log.exception("requestFailed", error=repr(exc))
            await send({"ok": False, "error": f"internal error: {exc!r} (see {self.ctl.layout.daemon_log})"})
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            if self.exit_after_reply:
                self.stop.set()

    async def dispatch(self, request: proto.Request[R], progress: Progress) -> R:
        reply = await self.handlers[request.op](request, progress)
        assert isinstance(reply, request.reply)
        return typing.cast(R, reply)

    async def _ping(self, _: proto.Ping, __: Progress) -> proto.Pong:
        return proto.Pong(pid=os.getpid(), environment=self.ctl.env.name)

    async def _up(self, req: proto.Up, progress: Progress) -> proto.Ready:
        await self.ctl.up(progress)
        return await self.wait(req.timeout, progress)

    async def _wait(self, req: proto.Wait, progress: Progress) -> proto.Ready:
        return await self.wait(req.timeout, progress)

    async def _apply(self, req: proto.Apply, _: Progress) -> proto.Lines:
        return proto.Lines((await self.ctl.apply(req.text, req.source)).lines)

    async def _delete(self, req: proto.Delete, _: Progress) -> proto.Lines:
        return proto.Lines((await self.ctl.delete(req.text, req.source, req.refs)).lines)

    async def _scale(self, req: proto.Scale, _: Progress) -> proto.Scaled:
        return proto.Scaled(await self.ctl.scale(req.deployment, req.replicas))

    async def _status(self, _: proto.Status, __: Progress) -> proto.Snapshot:
        return await readiness.snapshot(self.ctl)

    async def _resources(self, _: proto.Resources, __: Progress) -> proto.ResourceList:
        return proto.ResourceList(tuple(resources.to_dict(o) for o in self.ctl.resources()))

    async def _rotate(self, _: proto.Rotate, __: Progress) -> proto.Rotated:
        return proto.Rotated(await asyncio.to_thread(self.ctl.rotate_certificates, force=True))

    async def _down(self, _: proto.Down, progress: Progress) -> proto.Removed:
        gone = await self.ctl.down(progress)
        self.exit_after_reply = True
        return proto.Removed(tuple(gone))

    async def wait(self, timeout: float, progress: Progress) -> proto.Ready:
        """Wait until :func:`readiness.not_ready` is empty; report what is still missing when it changes."""
        deadline = time.monotonic() + timeout
        last: tuple[str, ...] = ()
        started = time.monotonic()
        while True:
            snap = await readiness.snapshot(self.ctl)
            reasons = snap.not_ready
            if not reasons:
                self.log.info("environmentReady", routes={r.name: r.routes for r in snap.routers},
                              streams=proto.encode(snap.streams))
                return proto.Ready(ready=True, seconds=round(time.monotonic() - started, 1))
            if time.monotonic() > deadline:
                raise ControllerError(f"not ready after {timeout:.0f}s: " + "; ".join(reasons[:8]))
            if reasons != last:
                progress(f"waiting for {len(reasons)} things, e.g. {reasons[0]}")
                last = reasons
            await asyncio.sleep(0.5)


async def serve(layout: StateLayout, log: logmod.Logger, stop: asyncio.Event) -> int:
    try:
        env = client.load_environment(layout)
    except (OSError, envmod.EnvironmentSpecError) as exc:
        log.critical("runtimeStartFailed", error=str(exc))
        return 1
    try:
        tls, lifetime = tls_settings(os.environ)
    except ValueError as exc:
        log.critical("runtimeStartFailed", error=str(exc))
        return 1
    try:
        ctl = Controller(env, layout, log=log, tls=tls, cert_lifetime_s=lifetime)
    except StateStoreError as exc:
        log.critical("runtimeStartFailed", error=str(exc))
        return 1
    adopted = ctl.adopt()
    if adopted:
        log.info("processesFound", count=len(adopted), reason="previousRuntime")
    monitor = Monitor(env.monitoring, layout, env.name, pods=lambda: list(ctl.pods.values()),
                      statuses=ctl.sup.status, routers=lambda: readiness.gateways(ctl), log=log)
    keeping = await _start_monitoring(monitor, ctl, log)
    rotating = asyncio.create_task(tasks.guard(_rotate_forever(ctl, log), "certificateRotation", log)) if tls else None
    server = Server(ctl, log)
    layout.control_socket.unlink(missing_ok=True)
    unix = await asyncio.start_unix_server(server.handle, path=str(layout.control_socket))
    os.chmod(layout.control_socket, 0o600)
    log.info("runtimeStarted", environment=env.name, socket=str(layout.control_socket))
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(server.stop.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for w in waiters:
        w.cancel()
    unix.close()
    if keeping is not None:
        keeping.cancel()
    if rotating is not None:
        rotating.cancel()
    await monitor.close()
    if not server.exit_after_reply:
        await ctl.shutdown()
    layout.control_socket.unlink(missing_ok=True)
    log.info("runtimeStopped")
    return 0


LIFETIME_ENV = "MERIDIO_TLS_CERT_LIFETIME"


def tls_settings(environ: Mapping[str, str]) -> tuple[bool, float]:
    """(TLS on, certificate lifetime in seconds) from the daemon's environment: ``MERIDIO_TLS_INSECURE``
    (true turns mutual TLS off, for compatibility tests only) and ``MERIDIO_TLS_CERT_LIFETIME`` (Go
    duration, default 1h, at least 10s). Raises ``ValueError`` naming the variable."""
    raw = environ.get(tlsmod.INSECURE_ENV, "")
    try:
        insecure = parse_bool(raw)
    except ValueError:
        raise ValueError(f"{tlsmod.INSECURE_ENV}={quote(raw)}: must be true or false") from None
    lifetime_raw = environ.get(LIFETIME_ENV, "")
    try:
        lifetime = parse_duration(lifetime_raw) if lifetime_raw else pki.DEFAULT_LIFETIME_S
    except DurationError as exc:
        raise ValueError(f"{LIFETIME_ENV}={quote(lifetime_raw)}: {exc}") from None
    if lifetime < 10:
        raise ValueError(f"{LIFETIME_ENV}={quote(lifetime_raw)}: must be at least 10s")
    return not insecure, lifetime


async def _rotate_forever(ctl: Controller, log: logmod.Logger) -> None:
    """Renew certificates from their half-life on, for as long as the daemon runs."""
    while True:
        await asyncio.sleep(pki.check_interval(ctl.cert_lifetime_s))
        try:
            await asyncio.to_thread(ctl.rotate_certificates)
        except OSError as exc:  # a pod directory removed under our feet: the next round sees the new state
            log.warning("certificateRotationFailed", error=str(exc))


async def _start_monitoring(monitor: Monitor, ctl: Controller, log: logmod.Logger) -> asyncio.Task[None] | None:
    """The loopback endpoint and, if configured, Prometheus; a failure is logged and the runtime goes on
    without them (``meridio status`` says so)."""
    try:
        await monitor.start()
        prometheus = monitor.prometheus_process()
    except (MonitorError, OSError) as exc:
        log.error("monitoringNotStarted", error=str(exc))
        return None
    if prometheus is not None:
        ctl.side_processes.append(prometheus)
    return asyncio.create_task(tasks.guard(monitor.keep_targets(), "prometheusTargets", log))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meridio.runtime.local.daemon")
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    layout = StateLayout(pathlib.Path(args.state_dir))
    layout.logs.mkdir(parents=True, exist_ok=True)
    stream = open(layout.daemon_log, "a", buffering=1)  # noqa: SIM115 (the log stays open for the process)
    log = logmod.setup("runtime", level="INFO", stream=stream)
    layout.daemon_pid.write_text(f"{os.getpid()} {process_start_time(os.getpid())}\n")
    try:
        return tasks.run_until_signalled(lambda stop: serve(layout, log, stop))
    finally:
        with contextlib.suppress(OSError):
            if layout.daemon_pid.read_text().split()[0] == str(os.getpid()):
                layout.daemon_pid.unlink()


if __name__ == "__main__":
    sys.exit(main())
