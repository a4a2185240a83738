"""``meridio example-target``: the example application behind the streams (Meridio's mconnect server).

Answers each TCP connection with ``<name>\\n`` then echoes what the client sends until it closes, and
each UDP datagram with ``<name>\\n`` + the payload, from the address the datagram was sent to (the VIP).
Runs until SIGTERM/SIGINT (exit 0).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket

from meridio.cli.common import CliError
from meridio.common import log as logmod
from meridio.common import tasks
from meridio.target import replies, server

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("example-target", help="run the example target application (mconnect-like server)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--name", default=os.environ.get("HOSTNAME") or socket.gethostname(),
                   help="the name to answer with (default: $HOSTNAME or the host name)")
    p.add_argument("--tcp-ports", default="4000,4001,4002", help="comma-separated TCP ports (default 4000,4001,4002)")
    p.add_argument("--udp-ports", default="4003,4004", help="comma-separated UDP ports (default 4003,4004)")
    p.add_argument("--max-connections", type=int, default=10_000, help="concurrent TCP connections (default 10000)")
    p.add_argument("--log-level", default="INFO", help="log level (default INFO)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        tcp = replies.parse_ports("--tcp-ports", args.tcp_ports)
        udp = replies.parse_ports("--udp-ports", args.udp_ports)
    except replies.PortsError as exc:
        raise CliError(str(exc), code=2) from None
    if not args.name or "\n" in args.name:
        raise CliError("--name must be a non-empty single line", code=2)
    if not tcp and not udp:
        raise CliError("nothing to serve: give --tcp-ports and/or --udp-ports", code=2)
    if args.max_connections < 1:
        raise CliError("--max-connections must be at least 1", code=2)
    try:
        log = logmod.setup("example-target", level=args.log_level)
    except ValueError as exc:
        raise CliError(f"--log-level: {exc}", code=2) from None

    async def main(stop: asyncio.Event) -> int:
        target = server.ExampleTarget(args.name, max_connections=args.max_connections, log=log)
        try:
            await target.start(tcp, udp)
        except OSError as exc:
            await target.close()
            log.critical("exampleTargetStartFailed", error=str(exc))
            return 1
        await stop.wait()
        await target.close()
        log.info("exampleTargetStopped")
        return 0

    return tasks.run_until_signalled(main)
