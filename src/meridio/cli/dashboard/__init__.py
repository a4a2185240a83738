"""``meridio dashboard [--env NAME] [--host H] [--port P] [--interval S]``: a live web view of an environment.

The page shows the topology (trenches → attractors → FE+LB replicas → conduits → streams → targets),
the gateways and their BGP/BFD sessions with each FE, the traffic per target (from the LB pods' hit
counters), every pod, and what is not ready and why; green is up, red is down, grey is idle. It
refreshes itself. :mod:`.view` builds what it shows from one snapshot (pure), :mod:`.traffic` turns
counters into rates, :mod:`.server` polls the runtime daemon and serves the page and ``/api/view``.
"""
from __future__ import annotations

import argparse
import signal
import threading

from meridio.cli.common import CliError, add_env_option, call, env_layout
from meridio.cli.dashboard import server
from meridio.runtime.local import protocol as proto

__all__ = ["DEFAULT_PORT", "register"]

DEFAULT_PORT = 8023


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("dashboard", help="serve a live web view of an environment on a local port")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--interval", type=float, default=2.0, metavar="S",
                   help="seconds between refreshes of the view (default 2)")
    add_env_option(p)
    p.set_defaults(func=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    if not args.interval > 0:
        raise CliError(f"--interval: {args.interval} is not a positive number of seconds")
    call(args, proto.Ping())  # an environment that is not up is one sentence, not an empty page
    poller = server.Poller(args.env, server.daemon_sources(env_layout(args)))
    try:
        httpd = server.make_server(args.host, args.port, poller)
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop, args.interval), name="dashboard-poller", daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    print(f"dashboard of environment {args.env!r} at http://{_url_host(str(host))}:{port}/ (Ctrl-C ends)", flush=True)
    # SIGTERM ends the server like Ctrl-C: quietly, status 0
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        httpd.server_close()
        thread.join(timeout=15)
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
