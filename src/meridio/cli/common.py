"""What the ``meridio`` sub-commands share: the one user-facing error, the environment option, the
runtime daemon call, progress lines and tables.

Every sub-command module imports these from here (never from :mod:`meridio.cli.main`, which imports the
sub-commands), so the CLI's import graph has no cycle.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any, TypeVar

from meridio.runtime.local import client
from meridio.runtime.local import protocol as proto
from meridio.runtime.local.layout import StateLayout

__all__ = ["DEFAULT_ENV", "KIND_ALIASES", "CliError", "add_env_option", "call", "env_layout", "print_progress",
           "table"]

R = TypeVar("R")

DEFAULT_ENV = "default"

KIND_ALIASES = {
    "trench": "Trench", "trenches": "Trench", "conduit": "Conduit", "conduits": "Conduit", "stream": "Stream",
    "streams": "Stream", "flow": "Flow", "flows": "Flow", "vip": "Vip", "vips": "Vip", "attractor": "Attractor",
    "attractors": "Attractor", "gateway": "Gateway", "gateways": "Gateway", "nad": "NetworkAttachmentDefinition",
    "networkattachmentdefinition": "NetworkAttachmentDefinition",
    "networkattachmentdefinitions": "NetworkAttachmentDefinition",
}
"""The names ``get``/``delete`` accept for each resource kind."""


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 1 (or ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def add_env_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", default=os.environ.get("MERIDIO_ENV", DEFAULT_ENV),
                   help=f"environment name (env MERIDIO_ENV, default {DEFAULT_ENV!r})")


def env_layout(args: argparse.Namespace) -> StateLayout:
    return client.layout_for(args.env)


def print_progress(text: str) -> None:
    print(f"  {text}", flush=True)


def call(args: argparse.Namespace, request: proto.Request[R], *, progress: bool = False) -> R:
    """Send ``request`` to the environment's daemon; user errors become :class:`CliError`."""
    try:
        return client.request(env_layout(args), request, progress=print_progress if progress else None)
    except client.DaemonUnavailable:
        raise CliError(f"environment {args.env!r} is not up (run: meridio up)") from None
    except client.RequestFailed as exc:
        raise CliError(str(exc)) from None


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)
