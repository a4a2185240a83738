"""``meridio up [-f ENV]`` and ``meridio down``: bring a local environment up (or repair it), tear it down.

``up`` parses the environment (the built-in default, Meridio's e2e environment, unless ``-f``), starts
the runtime daemon if none runs for it, and streams the daemon's progress until everything is ready;
running it again on a running or half-built environment repairs what is missing. ``down`` removes every
namespace, link, process and file the environment made, also when its daemon is gone or broken.

``meridio demo`` runs :func:`up` on the default environment.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

from meridio.cli.common import DEFAULT_ENV, CliError, add_env_option, call, print_progress
from meridio.runtime.local import client
from meridio.runtime.local import environment as envmod
from meridio.runtime.local import protocol as proto

__all__ = ["register", "up"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("up", help="bring a local environment up, or repair it (idempotent)",
                              description=(__doc__ or "").splitlines()[0])
    p.add_argument("-f", "--filename", help="environment file (default: the built-in default environment)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait until ready (default 180)")
    p.set_defaults(func=_up)
    d = subparsers.add_parser("down", help="remove every namespace, process and file of an environment")
    add_env_option(d)
    d.set_defaults(func=_down)
    r = subparsers.add_parser("rotate-certificates",
                              help="issue every component certificate anew now; connections in use go on")
    add_env_option(r)
    r.set_defaults(func=_rotate)


def _load_env(path: str | None) -> tuple[envmod.Environment, str, pathlib.Path]:
    source = pathlib.Path(path) if path else envmod.DEFAULT_PATH
    try:
        env = envmod.load(source)
    except envmod.EnvironmentSpecError as exc:
        raise CliError(str(exc)) from None
    missing = [str(p) for p in env.resources if not p.exists()]
    if missing:
        raise CliError(f"{source}: resource file not found: {missing[0]}")
    return env, source.read_text(), source.resolve().parent


def _up(args: argparse.Namespace) -> int:
    return up(args.filename, args.timeout)


def up(filename: str | None, timeout: float) -> int:
    """Bring the environment of ``filename`` (the default one for ``None``) up; 0 once it is ready."""
    problem = client.preflight()
    if problem:
        raise CliError(problem)
    env, text, base = _load_env(filename)
    layout = client.layout_for(env.name)
    started = time.monotonic()
    running = client.ping(layout)
    if running and layout.environment_file.exists() and layout.environment_file.read_text() != text:
        raise CliError(f"environment {env.name!r} is up with another definition; run 'meridio down --env "
                       f"{env.name}' first")
    print(f"meridio up: environment {env.name!r} (state in {layout.root})", flush=True)
    if not running:
        client.save_environment(layout, text, base)
        try:
            client.start_daemon(layout)
        except client.DaemonUnavailable as exc:
            raise CliError(str(exc)) from None
    try:
        result = client.request(layout, proto.Up(timeout=timeout), progress=print_progress)
    except client.RequestFailed as exc:
        raise CliError(f"{exc}\n  (meridio status --env {env.name} shows the details; meridio up repairs)") from None
    except client.DaemonUnavailable as exc:
        raise CliError(str(exc)) from None
    print(f"ready in {time.monotonic() - started:.1f}s — try: meridio status, meridio get pods, "
          f"meridio traffic --trench <trench> --vip <address> --port <port>", flush=True)
    ports = client.monitoring_ports(layout)
    if ports is not None:
        print(f"metrics: {ports.url}/metrics, each pod's at {ports.url}/pods/<pod>/<component>/metrics"
              + (f"; Prometheus: {ports.prometheus_url}" if ports.prometheus_url else ""), flush=True)
    return 0 if result.ready else 1


def _rotate(args: argparse.Namespace) -> int:
    done = call(args, proto.Rotate())
    if done.certificates == 0:
        print(f"environment {args.env!r} runs without mutual TLS: no certificates to rotate")
    else:
        print(f"{done.certificates} certificates issued anew; every component reads its new files on its next "
              "connection")
    return 0


def _down(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise CliError("the local runtime needs root: run it with sudo")
    layout = client.layout_for(args.env)
    saved = client.saved_environment(layout)
    prefix = saved.prefix if saved else (envmod.load_default().prefix if args.env == DEFAULT_ENV else None)
    if not client.state_exists(layout) and prefix is None:
        print(f"environment {args.env!r}: nothing to tear down")
        return 0
    if client.ping(layout):
        try:
            client.request(layout, proto.Down(), progress=print_progress)
        except (client.RequestFailed, client.DaemonUnavailable) as exc:
            print(f"  the daemon could not tear down ({exc}); cleaning up without it", file=sys.stderr)
        client.wait_daemon_exit(layout)
    gone = client.teardown(layout, prefix)
    print(f"environment {args.env!r} is down" + (f" ({len(gone)} leftover namespaces removed)" if gone else ""))
    return 0
