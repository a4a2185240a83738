"""``meridio traffic --trench T --vip ADDR --port P [--udp] [--nconn N] [--timeout S] [-o json]``.

mconnect-like: from the trench's traffic generator (the one behind the gateway router of the segment
whose attractor announces ADDR), N connections (default 400) to ADDR:P; prints the connections each
target answered and the lost connections. With ``--duration S [--rate R]`` it works like ctraffic:
N long-lived connections for S seconds exchanging R messages per second each, reporting per target the
connections and messages, plus failed connects, resets, timeouts, reconnects and lost messages.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
from typing import Any

from meridio.api import resources
from meridio.cli.common import CliError, add_env_option, call, env_layout, table
from meridio.runtime.local import client, generator
from meridio.runtime.local import environment as envmod
from meridio.runtime.local import protocol as proto

__all__ = ["format_report", "register", "run_traffic"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("traffic", help="send connections from a trench's traffic generator to a VIP")
    p.add_argument("--trench", required=True)
    p.add_argument("--vip", required=True, help="VIP address (IPv4 or IPv6)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--udp", action="store_true")
    p.add_argument("--nconn", type=int, default=400)
    p.add_argument("--timeout", type=float, default=None, help="seconds (default 120; ctraffic: per message 2)")
    p.add_argument("--duration", type=float, default=None, help="ctraffic mode: keep connections for S seconds")
    p.add_argument("--rate", type=float, default=10.0, help="ctraffic: messages per second per connection")
    p.add_argument("--router", help="the gateway router whose traffic generator sends (default: found from the VIP)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    add_env_option(p)
    p.set_defaults(func=_traffic)


def run_traffic(env: envmod.Environment, router: envmod.Router, argv: list[str], timeout: float) -> dict[str, Any]:
    """One run of ``router``'s traffic generator; its report (:class:`CliError` if it fails)."""
    try:
        return generator.run(env, router, argv, timeout)
    except generator.GeneratorError as exc:
        raise CliError(str(exc)) from None


def _traffic(args: argparse.Namespace) -> int:
    try:
        ipaddress.ip_address(args.vip)
    except ValueError:
        raise CliError(f"--vip: {args.vip!r} is not an IP address") from None
    env = client.saved_environment(env_layout(args))
    if env is None:
        raise CliError(f"environment {args.env!r} is not up (run: meridio up)")
    if args.router:
        router = env.router(args.router)
    else:
        objs = [resources.parse_object(o) for o in call(args, proto.Resources()).items]
        router = generator.choose_router(env, objs, args.trench, args.vip)
    if router is None or router.traffic_generator is None:
        raise CliError(f"no traffic generator for trench {args.trench!r} (routers: "
                       f"{', '.join(r.name for r in env.routers)})")
    argv = ["--address", args.vip, "--port", str(args.port), "--nconn", str(args.nconn), "--rate", str(args.rate)]
    argv += ["--udp"] if args.udp else []
    argv += ["--timeout", str(args.timeout)] if args.timeout is not None else []
    argv += ["--duration", str(args.duration)] if args.duration else []
    budget = (args.duration or 0) + (args.timeout or 120) + 30
    report = run_traffic(env, router, argv, budget)
    print(json.dumps(report, indent=2) if args.output == "json" else format_report(args.trench, report))
    return 0


def format_report(trench: str, r: dict[str, Any]) -> str:
    vip = f"[{r['address']}]" if ":" in r["address"] else r["address"]
    head = (f"{trench}: {r['connections']} {r['protocol'].upper()} connections to {vip}:{r['port']} from "
            f"{r['router']}'s traffic generator in {r['elapsed_s']}s: {len(r['hosts'])} targets, {r['lost']} lost")
    if r["mode"] == "ctraffic":
        rows = [(h, n, r["messages"].get(h, 0)) for h, n in r["hosts"].items()]
        body = table(("TARGET", "CONNECTIONS", "MESSAGES"), rows)
        tail = (f"sent {r['sent']}, received {r['received']}, lost messages {r['lost_messages']}; failed connects "
                f"{r['failed_connects']}, resets {r['resets']}, timeouts {r['timeouts']}, reconnects {r['reconnects']}, "
                f"moved {r['moved']}")
        return f"{head}\n{body}\n{tail}"
    rows = [(h, n, "#" * max(1, round(40 * n / max(r["connections"], 1)))) for h, n in r["hosts"].items()]
    errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items())
    return "\n".join([head, table(("TARGET", "CONNECTIONS", ""), rows)] + ([f"errors: {errors}"] if errors else []))
