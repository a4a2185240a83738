"""``meridio get KIND [NAME] [-o yaml|json]`` and ``meridio status [-o json] [--watch [--interval S]]``.

``get`` lists resources (trenches, conduits, streams, flows, vips, attractors, gateways, nads) as a
table, or in their YAML form (``-o yaml``, ``-o json``: a ``List`` of the objects, or the object when
NAME is given); ``get pods`` and ``get deployments`` show the runtime's pods and target deployments.
``status`` shows what runs, the BGP/BFD sessions of the gateway routers, the streams and their targets,
and what is not ready and why; ``-o json`` lists every process with its pod, component, pid and state.
``--watch`` redraws the same text (:func:`render_status`) every few seconds (:mod:`meridio.cli.watch`).
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from typing import Any

from meridio.api import yamlio
from meridio.cli import watch
from meridio.cli.common import KIND_ALIASES, CliError, add_env_option, call, table
from meridio.runtime.local import protocol as proto

__all__ = ["register", "render_status"]

_RUNTIME_KINDS = {"pod": "pods", "pods": "pods", "po": "pods", "deployment": "deployments",
                  "deployments": "deployments", "deploy": "deployments"}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    g = subparsers.add_parser("get", help="list resources, pods or deployments of a local environment")
    g.add_argument("kind", help="trenches|conduits|streams|flows|vips|attractors|gateways|nads|pods|deployments")
    g.add_argument("name", nargs="?")
    g.add_argument("-n", "--namespace", help="only this namespace (default: all)")
    g.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")
    add_env_option(g)
    g.set_defaults(func=_get)
    s = subparsers.add_parser("status", help="what runs, sessions, streams, targets, and what is not ready")
    s.add_argument("-o", "--output", choices=("text", "json"), default="text")
    s.add_argument("-w", "--watch", action="store_true", help="redraw every --interval seconds until Ctrl-C")
    s.add_argument("--interval", type=_positive_seconds, default=2.0, metavar="S",
                   help="seconds between redraws with --watch (default 2)")
    add_env_option(s)
    s.set_defaults(func=_status)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _join(values: Iterable[Any]) -> str:
    return ",".join(map(str, values)) or "-"


_COLUMNS: dict[str, tuple[tuple[str, ...], Callable[[dict[str, Any]], tuple[Any, ...]]]] = {
    "Trench": (("IP-FAMILY",), lambda s: (s.get("ip-family", ""),)),
    "Conduit": (("TYPE", "PORT-NATS"), lambda s: (
        s.get("type", ""),
        _join(f"{n['port']}->{n['target-port']}/{n['protocol']}" for n in s.get("destination-port-nats", [])))),
    "Stream": (("CONDUIT", "MAX-TARGETS"), lambda s: (s.get("conduit", "-"), s.get("max-targets", "-"))),
    "Flow": (("STREAM", "PRIORITY", "PROTOCOLS", "DST-PORTS", "VIPS"), lambda s: (
        s.get("stream", "-"), s.get("priority", ""), _join(s.get("protocols", [])),
        _join(s.get("destination-ports", [])), _join(s.get("vips", [])))),
    "Vip": (("ADDRESS",), lambda s: (s.get("address", "-"),)),
    "Attractor": (("REPLICAS", "COMPOSITES", "VIPS", "GATEWAYS"), lambda s: (
        s.get("replicas", 1), _join(s.get("composites", [])), _join(s.get("vips", [])), _join(s.get("gateways", [])))),
    "Gateway": (("ADDRESS", "PROTOCOL"), lambda s: (s.get("address", ""), s.get("protocol", ""))),
    "NetworkAttachmentDefinition": ((), lambda s: ()),
}


def _get(args: argparse.Namespace) -> int:
    kind_name = args.kind.lower()
    if kind_name in _RUNTIME_KINDS:
        return _get_runtime(args, _RUNTIME_KINDS[kind_name])
    kind = KIND_ALIASES.get(kind_name)
    if kind is None:
        raise CliError(f'unknown kind "{args.kind}" (trenches, conduits, streams, flows, vips, attractors, gateways, '
                       f'nads, pods, deployments)')
    objs = [o for o in call(args, proto.Resources()).items if o["kind"] == kind
            and (args.namespace is None or o["metadata"].get("namespace", "default") == args.namespace)
            and (args.name is None or o["metadata"]["name"] == args.name)]
    if args.name and not objs:
        raise CliError(f'{kind.lower()} "{args.name}" not found')
    _print_objects(kind, objs, args)
    return 0


def _print_objects(kind: str, objs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    if args.output == "json":
        doc: Any = objs[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": objs}
        print(json.dumps(doc, indent=2))
    elif args.output == "yaml":
        print(yamlio.dump_all(objs) if not args.name else yamlio.dump(objs[0]), end="")
    elif not objs:
        print(f"No {kind} found.")
    else:
        header, cols = _COLUMNS[kind]
        rows = [(o["metadata"].get("namespace", "default"), o["metadata"]["name"],
                 (o["metadata"].get("labels") or {}).get("trench", "-"), *cols(o.get("spec") or {})) for o in objs]
        print(table(("NAMESPACE", "NAME", "TRENCH", *header), rows))


def _get_runtime(args: argparse.Namespace, what: str) -> int:
    snap = call(args, proto.Status())
    if what == "pods":
        pods = [p for p in snap.pods if args.name is None or p.name == args.name]
        if args.output != "table":
            print(json.dumps(proto.encode(pods), indent=2))
            return 0
        rows = [(p.name, p.kind, p.node or "-", p.trench or "-", p.state, sum(c.restarts for c in p.containers),
                 p.reason) for p in pods]
        print(table(("NAME", "KIND", "NODE", "TRENCH", "STATE", "RESTARTS", "REASON"), rows))
        return 0
    deps: dict[str, list[proto.Pod]] = {}
    for p in snap.pods:
        if p.kind == "target":
            deps.setdefault(p.name.rsplit("-", 1)[0], []).append(p)
    ready = [(d, f"{sum(p.state == 'Running' for p in ps)}/{len(ps)}") for d, ps in sorted(deps.items())]
    print(json.dumps(dict(ready)) if args.output != "table" else table(("NAME", "READY"), ready))
    return 0


def _status(args: argparse.Namespace) -> int:
    if args.watch:
        return watch.run(lambda: _status_frame(args), interval_s=args.interval)
    snap = call(args, proto.Status())
    print(json.dumps(proto.encode(snap), indent=2) if args.output == "json" else render_status(snap).rstrip("\n"))
    return 0


def _status_frame(args: argparse.Namespace) -> str:
    """One frame of ``status --watch``: the status, or why there is none right now (the watch goes on)."""
    try:
        snap = call(args, proto.Status())
    except CliError as exc:
        return f"meridio: {exc}\n"
    return json.dumps(proto.encode(snap), indent=2) if args.output == "json" else render_status(snap)


def render_status(snap: proto.Snapshot) -> str:
    """The text of ``meridio status``: pods, sessions, routes, streams and targets, what is not ready."""
    parts = [f"environment {snap.environment} (prefix {snap.prefix}, state {snap.state_dir})\n\n"]
    rows = [(p.name, p.kind, p.node or "-", p.state, p.reason) for p in snap.pods]
    parts.append(table(("POD", "KIND", "NODE", "STATE", "REASON"), rows) + "\n\n")
    parts.append(_routers_text(snap))
    parts.append(_streams_text(snap))
    reasons = snap.not_ready + snap.problems
    parts.append("\nnot ready:\n" if reasons else "\nready: every pod runs, sessions are up, streams are open\n")
    parts += [f"  - {r}\n" for r in reasons]
    return "".join(parts)


def _routers_text(snap: proto.Snapshot) -> str:
    rows = []
    for r in snap.routers:
        for s in r.sessions or (proto.Session(name="-", neighbor="-", state="", info="no session", bfd="-"),):
            rows.append((r.name, r.trench, s.neighbor, s.info or s.state, s.bfd or "-"))
    text = table(("ROUTER", "TRENCH", "FRONTEND", "BGP", "BFD"), rows) + "\n\n"
    routes = [(r.name, dst, _join(hops)) for r in snap.routers for dst, hops in sorted(r.routes.items())]
    if routes:
        text += table(("ROUTER", "ROUTE", "NEXT-HOPS"), routes) + "\n\n"
    return text


def _streams_text(snap: proto.Snapshot) -> str:
    rows: list[tuple[str, ...]] = []
    for trench, targets in sorted(snap.streams.items()):
        if targets is None:
            rows.append((trench, "-", "-", "NSP not answering"))
            continue
        per: dict[tuple[str, str], list[str]] = {}
        for t in targets:
            per.setdefault((t.conduit, t.stream), []).append(f"{t.identifier}:{t.status[0]}")
        rows += [(trench, c, s, _join(sorted(ids))) for (c, s), ids in sorted(per.items())]
    text = table(("TRENCH", "CONDUIT", "STREAM", "TARGETS (identifier:E=enabled,D=disabled)"), rows) + "\n"
    taps = [(pod, st.status, st.stream, st.conduit, st.trench)
            for pod, sts in sorted(snap.targets.items()) for st in (sts or ())]
    if taps:
        text += "\n" + table(("TARGET POD", "STATUS", "STREAM", "CONDUIT", "TRENCH"), taps) + "\n"
    return text
