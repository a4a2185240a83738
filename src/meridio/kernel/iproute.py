"""The ``ip`` and ``sysctl`` commands (iproute2, procps), for callers that work on whole namespaces by name.

The local runtime builds its external side (segments, routers, traffic generators, frontends' external
veths) with ``ip -batch`` — one process per namespace and step — and reads routes back as ``ip -j`` JSON.
The components use pyroute2 (:mod:`meridio.kernel.netlink`) instead; this module is for the runtime's
few, coarse steps, where a batch of text lines is the clearest form.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import Iterable, Mapping, Sequence

from meridio.kernel import netns as netnsmod

__all__ = ["IpCommandError", "addresses", "batch", "bird_routes", "delete_link", "link_exists", "run", "sysctl"]


class IpCommandError(RuntimeError):
    """An ``ip``/``sysctl`` command failed; the message has the command and what it printed."""


def run(argv: Sequence[str], *, input: str | None = None, timeout: float = 30.0) -> str:
    """Run ``argv``; its output, or :class:`IpCommandError` with its error output."""
    try:
        done = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise IpCommandError(f"{argv[0]} is not installed ({exc.filename})") from None
    if done.returncode != 0:
        raise IpCommandError(f"{' '.join(argv[:4])}...: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def batch(ns: str, lines: Iterable[str]) -> None:
    """``ip -n NS -batch -`` of ``lines`` (nothing when there are none)."""
    text = "\n".join(lines)
    if text:
        run(["ip", "-n", ns, "-batch", "-"], input=text + "\n")


def sysctl(ns: str, values: Mapping[str, str]) -> None:
    """Set ``values`` inside namespace ``ns``."""
    if values:
        run(netnsmod.exec_argv(ns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())]))


def addresses(ns: str, ifname: str) -> set[str] | None:
    """The addresses on ``ifname`` in ``ns`` (``a/len``), or None if there is no such interface."""
    done = subprocess.run(["ip", "-j", "-n", ns, "addr", "show", "dev", ifname], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        return None
    data = json.loads(done.stdout or "[]")
    if not data:
        return None
    return {f"{a['local']}/{a['prefixlen']}" for a in data[0].get("addr_info", [])}


def link_exists(ns: str, ifname: str) -> bool:
    return subprocess.run(["ip", "-n", ns, "link", "show", "dev", ifname], capture_output=True,
                          check=False).returncode == 0


def delete_link(ns: str, ifname: str) -> None:
    """Delete ``ifname`` if it is there (it may vanish on its own meanwhile: a namespace being torn down)."""
    subprocess.run(["ip", "-n", ns, "link", "del", ifname], capture_output=True, check=False)


async def _output(argv: Sequence[str], timeout: float) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return ""
    return out.decode()


async def bird_routes(ns: str, timeout: float = 3.0) -> dict[str, list[str]]:
    """The routes BIRD installed in namespace ``ns``'s main table: destination (``a/len``) → next hops.

    Read-only and bounded by ``timeout``; a namespace that does not answer has no routes.
    """
    out: dict[str, list[str]] = {}
    for fam in ("-4", "-6"):
        text = await _output(["ip", "-j", fam, "-n", ns, "route", "show", "proto", "bird"], timeout)
        with contextlib.suppress(ValueError):
            for r in json.loads(text or "[]"):
                hops = [h.get("gateway", "") for h in r.get("nexthops", [])] or [r.get("gateway", "")]
                dst = r.get("dst", "")
                if "/" not in dst:
                    dst += "/128" if ":" in dst else "/32"
                out[dst] = sorted(h for h in hops if h)
    return out
