"""``meridio logs POD [-c COMPONENT] [--tail N] [-f]``, and ``--pod POD`` for ``meridio target``.

``logs`` prints the logs the supervisor keeps for each process of a pod (``<state>/logs/<pod>/``;
gateway routers are pods ``router-<name>``, the runtime itself ``runtime``). ``meridio target
open|close|watch ... --pod POD`` runs the target tools (:mod:`meridio.cli.target`, unchanged) against
that pod's TAPA socket in a local environment.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

from meridio.cli.common import CliError, add_env_option, env_layout

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("logs", help="print the logs of a pod's processes in a local environment")
    p.add_argument("pod", help="pod name (see meridio get pods), router-<name>, or runtime")
    p.add_argument("-c", "--component", help="only this process of the pod (e.g. lb, frontend, tapa)")
    p.add_argument("--tail", type=int, default=None, help="only the last N lines of each log")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    add_env_option(p)
    p.set_defaults(func=_logs)
    _extend_target(subparsers)


def _log_files(args: argparse.Namespace) -> list[pathlib.Path]:
    layout = env_layout(args)
    if args.pod == "runtime":
        return [layout.daemon_log]
    directory = layout.logs / args.pod
    if not directory.is_dir():
        known = sorted(p.name for p in layout.logs.iterdir() if p.is_dir()) if layout.logs.is_dir() else []
        raise CliError(f"no logs for pod {args.pod!r} in environment {args.env!r}"
                       + (f" (pods: {', '.join(known)})" if known else ""))
    files = sorted(directory.glob("*.log"))
    if args.component:
        files = [f for f in files if f.stem == args.component]
        if not files:
            raise CliError(f"pod {args.pod!r} has no process {args.component!r}")
    return files


def _logs(args: argparse.Namespace) -> int:
    files = _log_files(args)
    positions = {}
    for f in files:
        lines = f.read_text(errors="replace").splitlines()
        shown = lines[-args.tail:] if args.tail else lines
        prefix = f"[{f.stem}] " if len(files) > 1 else ""
        for line in shown:
            print(prefix + line)
        positions[f] = f.stat().st_size
    while args.follow:
        time.sleep(0.3)
        for f in files:
            size = f.stat().st_size if f.exists() else 0
            if size > positions[f]:
                with open(f, errors="replace") as fh:
                    fh.seek(positions[f])
                    chunk = fh.read()
                positions[f] = size
                prefix = f"[{f.stem}] " if len(files) > 1 else ""
                sys.stdout.write("".join(prefix + line for line in chunk.splitlines(keepends=True)))
                sys.stdout.flush()
    return 0


def _extend_target(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``--pod``/``--env`` to ``meridio target open|close|watch`` (registered before this module)."""
    target = subparsers.choices.get("target")
    if target is None:
        return
    for action in target._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.add_argument("--pod", help="the target pod of a local environment whose TAPA to use")
                add_env_option(sub)
                sub.set_defaults(func=_with_pod(sub.get_default("func")))


def _with_pod(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> Any:
        if args.pod:
            layout = env_layout(args)
            socket = layout.pod_dir(args.pod) / "ambassador.sock"
            if not socket.exists():
                raise CliError(f"pod {args.pod!r} of environment {args.env!r} has no TAPA socket at {socket} "
                               f"(see meridio get pods)")
            args.socket = str(socket)
        return func(args)
    return run
