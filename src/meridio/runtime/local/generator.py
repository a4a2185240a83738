"""The traffic generators of a local environment: which one sends to a VIP, and one run of it.

Each gateway router has a traffic-generator namespace behind it (the user's clients). ``meridio traffic``
picks the router on the segment of the attractor that announces the VIP and runs
:mod:`meridio.runtime.local.traffic` inside that namespace; its last output line is the JSON report.
"""
from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Sequence
from typing import Any

from meridio.api import resources
from meridio.kernel import netns as netnsmod
from meridio.runtime.local import environment as envmod
from meridio.runtime.local import pods as podsmod
from meridio.runtime.local.layout import Naming

__all__ = ["GeneratorError", "choose_router", "run"]


class GeneratorError(Exception):
    """The traffic generator could not run or report (one sentence for the user)."""


def choose_router(env: envmod.Environment, objs: Sequence[resources.Resource], trench: str,
                  vip: str) -> envmod.Router | None:
    """The router (with a traffic generator) on the segment of the attractor of ``trench`` announcing ``vip``."""
    candidates = env.trench_routers(trench)
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    addr = ipaddress.ip_address(vip)
    vip_names = {(v.namespace, v.name) for v in objs if isinstance(v, resources.Vip) and v.trench == trench
                 and v.spec.address and addr in ipaddress.ip_network(v.spec.address, strict=False)}
    for a in (o for o in objs if isinstance(o, resources.Attractor) and o.trench == trench):
        if not any((a.namespace, n) in vip_names for n in a.spec.vips):
            continue
        nads = a.spec.interface.network_attachments
        ref = f"{nads[0].namespace}/{nads[0].name}" if nads else None
        nad = next((podsmod.parse_nad(n) for n in objs if isinstance(n, resources.NetworkAttachmentDefinition)
                    and ref == f"{n.namespace}/{n.name}"), None)
        net = env.network_for(attachment=ref, vlan=a.spec.interface.nsm_vlan.vlan_id or (nad.vlan if nad else None))
        found = [r for r in candidates if net is not None and r.network == net.name]
        if found:
            return found[0]
    return candidates[0]


def run(env: envmod.Environment, router: envmod.Router, argv: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run the traffic generator behind ``router`` with ``argv``; its report, with the router's name."""
    ns = Naming(env.prefix).tg_ns(router.name)
    try:
        done = netnsmod.run(ns, [sys.executable, "-m", "meridio.runtime.local.traffic", *argv], check=False,
                            timeout=timeout)
    except netnsmod.CommandTimeout:
        raise GeneratorError(f"the traffic generator did not finish within {timeout:.0f}s") from None
    try:
        report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise GeneratorError(f"the traffic generator failed: {done.stderr.strip()[-300:] or done.stdout[-300:]}") from None
    if "error" in report:
        raise GeneratorError(str(report["error"]))
    report["router"] = router.name
    return report
