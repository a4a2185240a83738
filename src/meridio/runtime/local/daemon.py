"""The runtime daemon ``meridio up`` starts: owns the controller, serves the CLI on a unix socket.

``python -m meridio.runtime.local.daemon --state-dir DIR`` (detached by ``meridio up``; pid file
``DIR/runtime.pid``, log ``DIR/logs/runtime.log``). The environment is the copy ``meridio up`` left in
``DIR/environment.yaml`` (relative resource paths resolve against ``DIR/environment.base``).

Protocol (``DIR/runtime.sock``, mode 0600): the client sends one JSON object on one line,
``{"op": ..., ...}``; the daemon answers with zero or more ``{"progress": "..."}`` lines and one final
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}`` line. Operations: ``ping``, ``up``
(build or repair, then wait until ready), ``wait``, ``apply`` (``text``, ``source``), ``delete``
(``text``/``source`` or ``refs``), ``scale`` (``deployment``, ``replicas``), ``status``, ``resources``,
``down`` (tear everything down, then exit).

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
from collections.abc import Callable
from typing import Any

from meridio.api import resources
from meridio.common import log as logmod
from meridio.common import tasks
from meridio.runtime.local import environment as envmod
from meridio.runtime.local import readiness
from meridio.runtime.local.controller import Controller, RuntimeError_
from meridio.runtime.local.layout import StateLayout
from meridio.runtime.local.supervisor import process_start_time

__all__ = ["load_environment", "main", "save_environment", "serve"]

Write = Callable[[dict[str, Any]], None]


def save_environment(layout: StateLayout, text: str, base: pathlib.Path) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.environment_file.write_text(text)
    (layout.root / "environment.base").write_text(str(base))


def load_environment(layout: StateLayout) -> envmod.Environment:
    base = pathlib.Path((layout.root / "environment.base").read_text().strip())
    env = envmod.parse(_yaml(layout.environment_file.read_text()), base_dir=base)
    return env


def _yaml(text: str) -> Any:
    import yaml
    return yaml.safe_load(text)


class Server:
    def __init__(self, ctl: Controller, log: logmod.Logger) -> None:
        self.ctl, self.log = ctl, log
        self.stop = asyncio.Event()
        self.exit_after_reply = False

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
            request = json.loads(line or b"{}")
            result = await self.dispatch(request, write)
            await send({"ok": True, "result": result})
        except RuntimeError_ as exc:
            await send({"ok": False, "error": str(exc)})
        except (ValueError, KeyError, TypeError) as exc:
            await send({"ok": False, "error": f"bad request: {exc}"})
        except Exception as exc:  # one clear line to the user, the traceback in the daemon log
            self.log.exception("requestFailed", error=repr(exc))
            await send({"ok": False, "error": f"internal error: {exc!r} (see {self.ctl.layout.daemon_log})"})
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            if self.exit_after_reply:
                self.stop.set()

    async def dispatch(self, req: dict[str, Any], write: Write) -> Any:
        op = req.get("op")

        def progress(text: str) -> None:
            write({"progress": text})

        if op == "ping":
            return {"pid": os.getpid(), "environment": self.ctl.env.name}
        if op == "up":
            await self.ctl.up(progress)
            return await self.wait(float(req.get("timeout", 180)), progress)
        if op == "wait":
            return await self.wait(float(req.get("timeout", 180)), progress)
        if op == "apply":
            return list((await self.ctl.apply(req["text"], req.get("source", "<input>"))).lines)
        if op == "delete":
            refs = [tuple(r) for r in req.get("refs", [])]
            return list((await self.ctl.delete(req.get("text"), req.get("source", "<input>"), refs)).lines)
        if op == "scale":
            return await self.ctl.scale(str(req["deployment"]), int(req["replicas"]))
        if op == "status":
            return await readiness.snapshot(self.ctl)
        if op == "resources":
            return [resources.to_dict(o) for o in self.ctl.resources()]
        if op == "down":
            gone = await self.ctl.down(progress)
            self.exit_after_reply = True
            return {"namespaces": gone}
        raise ValueError(f"unknown op {op!r}")

    async def wait(self, timeout: float, progress: Callable[[str], None]) -> dict[str, Any]:
        """Wait until :func:`readiness.not_ready` is empty; report what is still missing when it changes."""
        deadline = time.monotonic() + timeout
        last: list[str] = []
        started = time.monotonic()
        while True:
            snap = await readiness.snapshot(self.ctl)
            reasons = snap["notReady"]
            if not reasons:
                self.log.info("environmentReady", routes={r["name"]: r["routes"] for r in snap["routers"]},
                              streams=snap["streams"])
                return {"ready": True, "seconds": round(time.monotonic() - started, 1)}
            if time.monotonic() > deadline:
                raise RuntimeError_(f"not ready after {timeout:.0f}s: " + "; ".join(reasons[:8]))
            if reasons != last:
                progress(f"waiting for {len(reasons)} things, e.g. {reasons[0]}")
                last = reasons
            await asyncio.sleep(0.5)


async def serve(layout: StateLayout, log: logmod.Logger, stop: asyncio.Event) -> int:
    try:
        env = load_environment(layout)
    except (OSError, envmod.EnvironmentSpecError) as exc:
        log.critical("runtimeStartFailed", error=str(exc))
        return 1
    ctl = Controller(env, layout, log=log)
    adopted = ctl.adopt()
    if adopted:
        log.info("processesFound", count=len(adopted), reason="previousRuntime")
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
    if not server.exit_after_reply:
        await ctl.shutdown()
    layout.control_socket.unlink(missing_ok=True)
    log.info("runtimeStopped")
    return 0


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
