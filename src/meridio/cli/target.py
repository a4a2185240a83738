"""``meridio target open|close|watch``: a client of the TAPA API, as Meridio's ``target-client``.

``open`` and ``close`` ask the TAPA and return at once (opening is asynchronous: use ``watch`` to see the
result). ``watch`` prints ``New stream list:`` then one ``STATUS - stream - conduit - trench`` line per
stream on every update, until interrupted; its ``-t/-c/-s`` are filters (omitted = any).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterable

import grpc

from meridio.api.pb.ambassador.v1 import tap_pb2, tap_pb2_grpc
from meridio.api.tapaclient import StreamStatus
from meridio.cli.common import CliError

__all__ = ["register", "format_update", "DEFAULT_SOCKET"]

DEFAULT_SOCKET = "/var/lib/meridio/ambassador.sock"
_CALL_TIMEOUT_S = 10.0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("target", help="open, close or watch streams through the TAPA (target-client)",
                              description=__doc__.splitlines()[0])
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, required, text in (("open", True, "ask the TAPA to open a stream"),
                                 ("close", True, "ask the TAPA to close a stream"),
                                 ("watch", False, "print the stream statuses on every change")):
        a = actions.add_parser(name, help=text, description=text)
        a.add_argument("-t", "--trench", required=required, default="", help="trench name")
        a.add_argument("-c", "--conduit", required=required, default="", help="conduit name")
        a.add_argument("-s", "--stream", required=required, default="", help="stream name")
        a.add_argument("--socket", default=os.environ.get("MERIDIO_SOCKET", DEFAULT_SOCKET),
                       help=f"the TAPA socket (path or unix:PATH; env MERIDIO_SOCKET, default {DEFAULT_SOCKET})")
        a.set_defaults(func=_run)


def _socket_path(socket: str) -> str:
    if socket.startswith("unix:"):
        rest = socket[len("unix:"):]
        return rest[2:] if rest.startswith("//") else rest
    return socket


def _stream(args: argparse.Namespace) -> tap_pb2.Stream:
    return tap_pb2.Stream(name=args.stream, conduit=tap_pb2.Conduit(
        name=args.conduit, trench=tap_pb2.Trench(name=args.trench)))


def format_update(statuses: Iterable[tap_pb2.StreamStatus]) -> str:
    """Meridio's target-client output for one Watch update."""
    return "\n".join(["New stream list:", *(StreamStatus.from_pb(s).line() for s in statuses)])


def _run(args: argparse.Namespace) -> int:
    path = _socket_path(args.socket)
    if not os.path.exists(path):
        raise CliError(f"cannot reach the TAPA: no socket at {path} (is the TAPA running? see --socket)")
    try:
        with grpc.insecure_channel(f"unix:{os.path.abspath(path)}") as channel:
            stub = tap_pb2_grpc.TapStub(channel)
            if args.action == "open":
                stub.Open(_stream(args), timeout=_CALL_TIMEOUT_S)
            elif args.action == "close":
                stub.Close(_stream(args), timeout=_CALL_TIMEOUT_S)
            else:
                return _watch(stub, _stream(args))
    except grpc.RpcError as exc:
        raise CliError(f"{args.action} failed: {exc.details() or exc.code().name}") from None
    return 0


def _watch(stub: tap_pb2_grpc.TapStub, stream: tap_pb2.Stream) -> int:
    # SIGTERM (e.g. `timeout 0.5 meridio target watch`) and Ctrl-C end the watch quietly, status 0. The
    # handler cancels the call rather than raising KeyboardInterrupt, which could surface anywhere in
    # grpc's iteration or the channel's close (a CI run once ended with 130 instead of 0).
    call = stub.Watch(stream)
    stopped = threading.Event()

    def stop(_signum: int, _frame: object) -> None:
        stopped.set()
        call.cancel()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for response in call:
            print(format_update(response.streamStatus), flush=True)
    except grpc.RpcError:
        if stopped.is_set():
            return 0
        raise
    if stopped.is_set():
        return 0
    print("meridio: the TAPA ended the watch", file=sys.stderr)
    return 1
