"""``meridio operator``: run the Kubernetes operator (kopf) for one namespace, with the admission
webhook in the same process when it is given a certificate directory."""
from __future__ import annotations

import argparse
import asyncio

from meridio.cli.common import CliError
from meridio.common import settings as settingsmod
from meridio.runtime.kubernetes import handlers
from meridio.runtime.kubernetes.operator import OperatorSettings

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("operator", help="run the Kubernetes operator (and its admission webhook)",
                              description="Run the Kubernetes operator for one namespace (kopf), with the "
                                          "admission webhook in the same process when given a certificate.")
    settingsmod.add_arguments(p, OperatorSettings, "MERIDIO_")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        cfg = settingsmod.from_namespace(OperatorSettings, args, "MERIDIO_")
    except settingsmod.SettingsError as exc:
        raise CliError(str(exc), code=2) from None
    if not cfg.namespace:
        raise CliError("--namespace (MERIDIO_NAMESPACE) is required: the operator watches its own namespace", code=2)
    asyncio.run(handlers.Operator(cfg).run())
    return 0
