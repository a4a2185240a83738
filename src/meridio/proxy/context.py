"""What the parts of the proxy's state share: settings, the kernel and IPAM adapters, time, logs."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

from meridio.api import conduitlinkclient
from meridio.common import log as logmod
from meridio.kernel import pins
from meridio.proxy import dataplane, deadlines

__all__ = ["Config", "Context", "IpamPort"]


@dataclasses.dataclass(frozen=True)
class Config:
    trench: str
    conduit: str
    node: str
    families: tuple[int, ...] = (4, 6)
    mtu: int = 1500
    release_delay: float = 20.0
    """Seconds between a disconnect and the release of the addresses (Meridio ``NSM_IP_RELEASE_DELAY``)."""
    orphan_timeout: float = 30.0
    """Seconds a target link survives its owner process (a TAPA that died without Disconnect)."""
    pod_ips: tuple[str, ...] = ()
    """This proxy pod's addresses on the pod network: the local ends of cross-node tunnels (none: no
    tunnels, every LB replica is linked with a veth)."""
    pod_netns: str = ""
    """Path template (``{pod}``) of a pod's network namespace: a link for pod P only for a caller in the
    namespace at that path ('' = the caller's namespace is not compared with the pod's)."""


class IpamPort(Protocol):
    async def allocate(self, name: str) -> tuple[str, ...]: ...

    async def release(self, name: str) -> None: ...


class LbLinkPort(Protocol):
    """An LB replica's ConduitLink service (:mod:`meridio.api.conduitlinkclient`; fakes in unit tests)."""

    async def connect(self, host: str, port: int, args: conduitlinkclient.ConnectArgs) -> conduitlinkclient.Reply: ...

    async def disconnect(self, host: str, port: int, *, trench: str, conduit: str, node: str) -> None: ...


@dataclasses.dataclass
class Context:
    config: Config
    dp: dataplane.Dataplane
    """The kernel adapter (unit tests pass an in-memory fake with the same methods)."""
    ipam: IpamPort
    releases: deadlines.Deadlines[str]
    """IPAM child names waiting for their delayed release."""
    monotonic: Callable[[], float]
    log: logmod.Logger = logmod.null
    lb_links: LbLinkPort | None = None
    """How cross-node LB ends are asked for (``None``: no tunnels)."""
    namespace_at: Callable[[pins.PinnedNs, str], bool | None] = pins.is_namespace_at
    """Whether a pinned namespace is the one at a path (``None``: nothing there); see ``Config.pod_netns``."""
