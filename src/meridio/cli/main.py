"""``meridio`` entry point: builds the sub-command parser and maps errors to one clear sentence.

Sub-commands live in their own modules; each exposes ``register(subparsers)`` which adds its parser
and sets ``func`` (``func(args) -> int``). Component daemons are started with ``meridio run <component>``
(see :mod:`meridio.cli.run`).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from meridio import __version__

__all__ = ["main", "CliError"]

# Modules that provide sub-commands, in the order they appear in --help.
COMMAND_MODULES = (
    "meridio.cli.run",
    "meridio.cli.resources",
    "meridio.cli.demo",
    "meridio.cli.target",
    "meridio.cli.exampletarget",
    "meridio.cli.up",
    "meridio.cli.apply",
    "meridio.cli.get",
    "meridio.cli.logs",
    "meridio.cli.traffic",
)


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 1 (or ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meridio", description="Meridio in Python: attract external traffic and spread it over targets.")
    parser.add_argument("--version", action="version", version=f"meridio {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # not built yet
            raise
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
    # Run the imported module's main, not this __main__ copy: sub-commands raise meridio.cli.main.CliError,
    # which this copy's `except CliError` would not catch (a traceback instead of one line under `python -m`).
    from meridio.cli import main as _entry
    sys.exit(_entry.main())
