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
import subprocess
import sys
from typing import Any

from meridio.cli.get import table
from meridio.cli.up import add_env_option, call, env_layout

__all__ = ["choose_router", "register", "run_traffic"]


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


def choose_router(env: Any, objs: list[dict[str, Any]], trench: str, vip: str) -> Any:
    """The router (with a traffic generator) on the segment of the attractor of ``trench`` announcing ``vip``."""
    from meridio.api import resources
    from meridio.runtime.local import pods as podsmod

    candidates = env.trench_routers(trench)
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    addr = ipaddress.ip_address(vip)
    parsed = [resources.parse_object(o) for o in objs]
    vip_names = {(v.namespace, v.name) for v in parsed if isinstance(v, resources.Vip) and v.trench == trench
                 and v.spec.address and addr in ipaddress.ip_network(v.spec.address, strict=False)}
    for a in (o for o in parsed if isinstance(o, resources.Attractor) and o.trench == trench):
        if not any((a.namespace, n) in vip_names for n in a.spec.vips):
            continue
        nads = a.spec.interface.network_attachments
        ref = f"{nads[0].namespace}/{nads[0].name}" if nads else None
        nad = next((podsmod.parse_nad(n) for n in parsed if isinstance(n, resources.NetworkAttachmentDefinition)
                    and ref == f"{n.namespace}/{n.name}"), None)
        net = env.network_for(attachment=ref, vlan=a.spec.interface.nsm_vlan.vlan_id or (nad.vlan if nad else None))
        found = [r for r in candidates if net is not None and r.network == net.name]
        if found:
            return found[0]
    return candidates[0]


def run_traffic(env: Any, router: Any, argv: list[str], timeout: float) -> dict[str, Any]:
    from meridio.cli.main import CliError
    from meridio.kernel import netns as netnsmod
    from meridio.runtime.local.layout import Naming

    ns = Naming(env.prefix).tg_ns(router.name)
    cmd = netnsmod.exec_argv(ns, [sys.executable, "-m", "meridio.runtime.local.traffic", *argv])
    try:
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CliError(f"the traffic generator did not finish within {timeout:.0f}s") from None
    try:
        report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise CliError(f"the traffic generator failed: {done.stderr.strip()[-300:] or done.stdout[-300:]}") from None
    if "error" in report:
        raise CliError(report["error"])
    report["router"] = router.name
    return report


def _traffic(args: argparse.Namespace) -> int:
    from meridio.cli.main import CliError
    from meridio.runtime.local import client

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
        router = choose_router(env, call(args, {"op": "resources"}), args.trench, args.vip)
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
