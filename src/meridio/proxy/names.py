"""Names the proxy gives and reads: interface names, interface aliases, request field checks (pure).

Every interface the proxy creates carries an *alias* (``IFLA_IFALIAS``, ``ip link ... alias``) saying
what it is, so that a restarted proxy finds its links again without any state file:

- a bridge port towards an LB replica: ``pl-<hash>``, alias ``meridio:l:<lb identifier>``;
- a bridge port towards a target: ``pt-<hash>``, alias
  ``meridio:t:<target id>:<netns inode>:<owner pid>:<owner start time>``;
- the LB end of an LB link (in the LB's namespace): ``<ifprefix>-<hash4>``, alias
  ``meridio:p:<trench>/<conduit>/<node>``.

Hashes are the first hex digits of SHA-1 over the identity, so names are stable across restarts.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re

from meridio.common import bounds

__all__ = [
    "IFNAMSIZ",
    "MAX_VNI",
    "vni",
    "Alias",
    "FarEndAlias",
    "InvalidName",
    "LbPortAlias",
    "TargetPortAlias",
    "check_identifier",
    "check_ifprefix",
    "check_interface_name",
    "check_netns",
    "check_target_id",
    "ipam_child",
    "is_lb_port",
    "is_target_port",
    "lb_far_name",
    "lb_port_name",
    "parse_alias",
    "target_port_name",
]

IFNAMSIZ = 15
"""Longest Linux interface name (16 bytes including the NUL)."""

_TARGET_ID = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,158}[A-Za-z0-9])?$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_IFPREFIX = re.compile(r"^[A-Za-z0-9_.-]{1,10}$")
_IDENTIFIER = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$")
_NETNS = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")

LB_PORT_PREFIX = "pl-"
TARGET_PORT_PREFIX = "pt-"
_ALIAS_ROOT = "meridio"


class InvalidName(ValueError):
    """A name is not acceptable; the message names the field and the rule."""


def check_target_id(value: str, field: str = "target_id") -> str:
    """Target ids become IPAM child names and interface aliases: keep them short and plain."""
    if not _TARGET_ID.match(value or ""):
        raise InvalidName(f"{field}: must be 1-160 letters, digits, '.', '_' or '-', starting and ending with a "
                          f"letter or digit (got {bounds.quote(value)})")
    return value


def check_interface_name(value: str, field: str = "interface_name") -> str:
    if not _IFNAME.match(value or "") or value in (".", ".."):
        raise InvalidName(f"{field}: must be a Linux interface name of 1-15 letters, digits, '.', '_' or '-' "
                          f"(got {bounds.quote(value)})")
    return value


def check_ifprefix(value: str, field: str = "ifprefix") -> str:
    if not _IFPREFIX.match(value or ""):
        raise InvalidName(f"{field}: must be 1-10 letters, digits, '.', '_' or '-' (got {bounds.quote(value)})")
    return value


def check_identifier(value: str, field: str = "identifier") -> str:
    if not _IDENTIFIER.match(value or ""):
        raise InvalidName(f"{field}: must be 1-128 letters, digits, '.', '_' or '-' (got {bounds.quote(value)})")
    return value


def check_netns(value: str, field: str = "netns") -> str:
    if not _NETNS.match(value or "") or value in (".", ".."):
        raise InvalidName(f"{field}: must be a namespace name of letters, digits, '.', '_' or '-' (got {bounds.quote(value)})")
    return value


def _digest(text: str, length: int) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def lb_port_name(identifier: str) -> str:
    """The proxy-side bridge port of the link to LB replica ``identifier``."""
    return LB_PORT_PREFIX + _digest("lb/" + identifier, 10)


def target_port_name(target_id: str) -> str:
    """The proxy-side bridge port of the link to target ``target_id``."""
    return TARGET_PORT_PREFIX + _digest("target/" + target_id, 10)


def is_lb_port(ifname: str) -> bool:
    return ifname.startswith(LB_PORT_PREFIX) and len(ifname) == 13


def is_target_port(ifname: str) -> bool:
    return ifname.startswith(TARGET_PORT_PREFIX) and len(ifname) == 13


MAX_VNI = 2**24 - 1


def vni(*, trench: str, conduit: str, node: str, identifier: str, attempt: int = 0) -> int:
    """The VNI of the cross-node link between this node's proxy and LB replica ``identifier``: derived
    from the conduit and the two ends, in 1..2^24-1, the same on every run.

    Collisions: a VNI must be unique among the VXLAN interfaces of one namespace (on one UDP port). When
    the proxy's or the LB's namespace already has a tunnel with it, ``attempt`` 1, 2, ... derive the
    next candidates; the proxy picks, the LB accepts or refuses, so both ends always agree."""
    salt = f"vxlan/{trench}/{conduit}/{node}/{identifier}" + (f"#{attempt}" if attempt else "")
    return int(hashlib.sha256(salt.encode()).hexdigest()[:8], 16) % MAX_VNI + 1


def lb_far_name(ifprefix: str, *, trench: str, conduit: str, node: str, attempt: int = 0) -> str:
    """The LB end of the link from this proxy: the LB's prefix, ``-`` and 4 hex digits (≤ 15 chars).

    ``attempt`` > 0 gives another name when the first one is taken in the LB's namespace by a link that
    is not ours (two proxies whose identities hash alike).
    """
    salt = f"{trench}/{conduit}/{node}" + (f"#{attempt}" if attempt else "")
    return f"{ifprefix[:IFNAMSIZ - 5]}-{_digest(salt, 4)}"


def ipam_child(owner: str, role: str = "src") -> str:
    """IPAM child name of an address, as Meridio names them: ``<id>-src`` / ``<id>-dst``."""
    return f"{owner}-{role}"


@dataclasses.dataclass(frozen=True)
class LbPortAlias:
    identifier: str

    def render(self) -> str:
        return f"{_ALIAS_ROOT}:l:{self.identifier}"


@dataclasses.dataclass(frozen=True)
class TargetPortAlias:
    target_id: str
    netns_inode: int
    owner_pid: int
    owner_start: int
    """Start time of the owner process (``/proc/<pid>/stat`` field 22): tells a reused pid apart."""

    def render(self) -> str:
        return f"{_ALIAS_ROOT}:t:{self.target_id}:{self.netns_inode}:{self.owner_pid}:{self.owner_start}"


@dataclasses.dataclass(frozen=True)
class FarEndAlias:
    trench: str
    conduit: str
    node: str

    def render(self) -> str:
        return f"{_ALIAS_ROOT}:p:{self.trench}/{self.conduit}/{self.node}"


Alias = LbPortAlias | TargetPortAlias | FarEndAlias


def parse_alias(text: str | None) -> Alias | None:
    """The alias of an interface the proxy made, or ``None`` for anything else (never raises)."""
    parts = (text or "").split(":")
    if len(parts) < 3 or parts[0] != _ALIAS_ROOT:
        return None
    kind, rest = parts[1], parts[2:]
    try:
        if kind == "l" and len(rest) == 1:
            return LbPortAlias(check_identifier(rest[0]))
        if kind == "t" and len(rest) == 4:
            return TargetPortAlias(check_target_id(rest[0]), int(rest[1]), int(rest[2]), int(rest[3]))
        if kind == "p" and len(rest) == 1 and rest[0].count("/") == 2:
            trench, conduit, node = rest[0].split("/")
            return FarEndAlias(trench, conduit, node)
    except ValueError:
        return None
    return None
