"""``meridio`` entry point: builds the sub-command parser and maps errors to one clear sentence.

Sub-commands live in their own modules; each exposes ``register(subparsers)`` which adds its parser
and sets ``func`` (``func(args) -> int``). What they share (:class:`CliError`, the daemon call) is in
:mod:`meridio.cli.common`. Component daemons are started with ``meridio run <component>`` (see
:mod:`meridio.cli.run`).
"""
from __future__ import annotations

import argparse
import sys

from meridio import __version__
from meridio.cli import apply, dashboard, demo, exampletarget, get, logs, operator, resources, run, target, traffic, up
from meridio.cli.common import CliError

__all__ = ["COMMAND_MODULES", "CliError", "main"]

COMMAND_MODULES = (run, resources, demo, target, exampletarget, up, apply, get, logs, traffic, dashboard, operator)
"""The modules that provide sub-commands, in the order they appear in --help (``logs`` extends ``target``)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meridio", description="Meridio in Python: attract external traffic and spread it over targets.")
    parser.add_argument("--version", action="version", version=f"meridio {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"meridio: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
