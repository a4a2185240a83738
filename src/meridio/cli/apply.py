"""``meridio apply -f FILE``, ``meridio delete -f FILE | KIND NAME``, ``meridio scale deployment/NAME``.

``apply`` and ``delete`` validate with the one validator (webhook rules, create and update,
cross-object) before anything changes: on any problem nothing is applied and every problem is printed
as ``Kind/name: field: message``. Deleting a Trench deletes everything of that trench (cascade), as
Meridio's owner references do. ``scale`` changes a target deployment's replicas (pods ``<name>-<i>``).
"""
from __future__ import annotations

import argparse
import pathlib
import sys

from meridio.api import resources
from meridio.api.problems import ProblemsError
from meridio.cli.common import KIND_ALIASES, CliError, add_env_option, call
from meridio.runtime.local import protocol as proto

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    a = subparsers.add_parser("apply", help="create or update resources from YAML files (validated first)")
    a.add_argument("-f", "--filename", action="append", required=True, help="YAML file ('-' = stdin); repeatable")
    add_env_option(a)
    a.set_defaults(func=_apply)
    d = subparsers.add_parser("delete", help="delete resources (a Trench takes everything of its trench along)")
    d.add_argument("-f", "--filename", action="append", help="YAML file with the objects to delete; repeatable")
    d.add_argument("kind", nargs="?", help="kind (trench, conduit, stream, flow, vip, attractor, gateway, nad)")
    d.add_argument("name", nargs="?", help="object name")
    d.add_argument("-n", "--namespace", help="namespace of KIND NAME (default: the only one holding it)")
    add_env_option(d)
    d.set_defaults(func=_delete)
    s = subparsers.add_parser("scale", help="set the replicas of a target deployment")
    s.add_argument("target", metavar="deployment/NAME")
    s.add_argument("--replicas", type=int, required=True)
    add_env_option(s)
    s.set_defaults(func=_scale)


def _read(filenames: list[str]) -> list[tuple[str, str]]:
    out = []
    for name in filenames:
        try:
            out.append((name, sys.stdin.read() if name == "-" else pathlib.Path(name).read_text(encoding="utf-8")))
        except OSError as exc:
            raise CliError(f"{name}: {exc.strerror}") from None
    return out


def _check(files: list[tuple[str, str]]) -> None:
    """Parse locally first, so schema and YAML errors are reported before the daemon is asked."""
    problems = []
    for source, text in files:
        try:
            resources.loads(text, source)
        except ProblemsError as exc:
            problems += [str(p) for p in exc.problems]
    if problems:
        raise CliError("\n".join(problems))


def _apply(args: argparse.Namespace) -> int:
    files = _read(args.filename)
    _check(files)
    text = "\n---\n".join(t for _, t in files)
    for line in call(args, proto.Apply(text=text, source=", ".join(n for n, _ in files))).lines:
        print(line)
    return 0


def _delete(args: argparse.Namespace) -> int:
    request: proto.Delete
    if args.filename:
        files = _read(args.filename)
        _check(files)
        request = proto.Delete(text="\n---\n".join(t for _, t in files), source=", ".join(n for n, _ in files))
    elif args.kind and args.name:
        kind = KIND_ALIASES.get(args.kind.lower())
        if kind is None:
            raise CliError(f'unknown kind "{args.kind}" (use one of: {", ".join(sorted(set(KIND_ALIASES.values())))})')
        request = proto.Delete(refs=((kind, _namespace_of(args, kind), args.name),))
    else:
        raise CliError("delete needs -f FILE or KIND NAME")
    for line in call(args, request).lines:
        print(line)
    return 0


def _namespace_of(args: argparse.Namespace, kind: str) -> str:
    if args.namespace:
        return str(args.namespace)
    found = {o["metadata"].get("namespace", "default") for o in call(args, proto.Resources()).items
             if o["kind"] == kind and o["metadata"]["name"] == args.name}
    if len(found) > 1:
        raise CliError(f"{kind}/{args.name} exists in namespaces {', '.join(sorted(found))}: choose one with -n")
    return found.pop() if found else "default"


def _scale(args: argparse.Namespace) -> int:
    kind, _, name = args.target.partition("/")
    if kind not in ("deployment", "deployments", "deploy") or not name:
        raise CliError(f"scale: expected deployment/NAME, not {args.target!r}")
    print(call(args, proto.Scale(deployment=name, replicas=args.replicas)).message)
    return 0
