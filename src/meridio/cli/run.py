"""``meridio run COMPONENT [flags]``: start one component daemon in the foreground.

Each component package has an ``app`` module exposing ``ENV_PREFIX``, a frozen ``Settings`` dataclass
(fields declared with :func:`meridio.common.settings.setting`) and ``run(settings) -> int``. Flags and
``<ENV_PREFIX>*`` environment variables fill the settings (flags win), as Meridio's envconfig does.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from meridio.cli.common import CliError
from meridio.common import settings as settingsmod

COMPONENTS = {
    "nsp": "meridio.nsp.app",
    "ipam": "meridio.ipam.app",
    "lb": "meridio.loadbalancer.app",
    "frontend": "meridio.frontend.app",
    "proxy": "meridio.proxy.app",
    "tapa": "meridio.tapa.app",
}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("run", help="run a component daemon in the foreground",
                              description=__doc__.splitlines()[0])
    p.add_argument("component", choices=sorted(COMPONENTS), help="the component to run")
    p.add_argument("args", nargs=argparse.REMAINDER, help="component flags (see meridio run COMPONENT --help)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        app = importlib.import_module(COMPONENTS[args.component])
    except ModuleNotFoundError as exc:
        raise CliError(f"component {args.component!r} is not available in this build ({exc.name})") from None
    parser = argparse.ArgumentParser(prog=f"meridio run {args.component}",
                                     description=(app.__doc__ or "").splitlines()[0] if app.__doc__ else None)
    settingsmod.add_arguments(parser, app.Settings, app.ENV_PREFIX)
    ns = parser.parse_args(args.args)
    try:
        settings = settingsmod.from_namespace(app.Settings, ns, app.ENV_PREFIX)
    except settingsmod.SettingsError as exc:
        raise CliError(f"invalid setting {exc}", code=2) from None
    return int(app.run(settings) or 0)


if __name__ == "__main__":
    sys.exit(0)
