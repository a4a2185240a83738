"""The proxy's IPAM client: addresses of its node subnet, one per served family (``ipam.v1.Ipam``).

Child names follow Meridio (reference §3.9): ``bridge`` for bridge0, ``<target id>-src`` for a target,
and ``lb:<identifier>-src`` for the LB end of an LB link (``:`` cannot occur in a target id, so a target
cannot ask for an LB's address). Allocating an existing child returns its address again and refreshes
it against IPAM's garbage collector, which is how the proxy renews what it holds.
"""
from __future__ import annotations

from collections.abc import Iterable

import grpc
import grpc.aio

from meridio.api.pb.ipam.v1 import ipam_pb2, ipam_pb2_grpc
from meridio.api.pb.nsp.v1 import model_pb2
from meridio.common import grpcutil, identity
from meridio.common import tls as tlsmod
from meridio.common.retry import PermanentError, TemporaryError

__all__ = ["BRIDGE_CHILD", "Ipam", "lb_child", "target_child"]

BRIDGE_CHILD = "bridge"
_FAMILY = {4: ipam_pb2.IPV4, 6: ipam_pb2.IPV6}


def lb_child(identifier: str) -> str:
    return f"lb:{identifier}-src"


def target_child(target_id: str) -> str:
    return f"{target_id}-src"


class Ipam:
    """Allocate/release named children in this proxy's node subnet of its conduit."""

    def __init__(self, address: str, *, trench: str, conduit: str, node: str, families: Iterable[int],
                 call_timeout: float = 10.0, tls: tlsmod.Tls | None = None) -> None:
        self.address = address
        self.families = tuple(families)
        self.call_timeout = call_timeout
        self._conduit = model_pb2.Conduit(name=conduit, trench=model_pb2.Trench(name=trench))
        self._node = node
        self._channels = grpcutil.RenewingChannel(address, tls=tls, server=identity.Component.IPAM)

    def _stub(self) -> ipam_pb2_grpc.IpamStub:
        try:
            return ipam_pb2_grpc.IpamStub(self._channels.get())
        except OSError as exc:  # the certificate files cannot be used right now
            raise TemporaryError(f"IPAM {self.address}: {exc}") from None

    def _child(self, name: str, family: int) -> ipam_pb2.Child:
        return ipam_pb2.Child(name=name, subnet=ipam_pb2.Subnet(conduit=self._conduit, node=self._node,
                                                                  ipFamily=_FAMILY[family]))

    async def allocate(self, name: str) -> tuple[str, ...]:
        """The child's address in every served family, as ``ip/node-prefix-length`` (v4 first).

        ``TemporaryError`` while IPAM cannot be reached or has no room; ``PermanentError`` if it rejects
        the request.
        """
        out = []
        for family in self.families:
            try:
                prefix = await self._stub().Allocate(self._child(name, family), timeout=self.call_timeout)
            except grpc.aio.AioRpcError as exc:
                raise _classify(exc, f"allocate {name} (IPv{family}) at IPAM {self.address}") from None
            out.append(f"{prefix.address}/{prefix.prefixLength}")
        return tuple(out)

    async def release(self, name: str) -> None:
        """Release the child in every served family (unknown children are fine)."""
        for family in self.families:
            try:
                await self._stub().Release(self._child(name, family), timeout=self.call_timeout)
            except grpc.aio.AioRpcError as exc:
                raise _classify(exc, f"release {name} (IPv{family}) at IPAM {self.address}") from None

    async def close(self) -> None:
        await self._channels.close()


def _classify(exc: grpc.aio.AioRpcError, what: str) -> Exception:
    if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return TemporaryError(f"{what}: {exc.details()}")
    err = grpcutil.error_from_rpc(exc, what)
    return err if isinstance(err, (TemporaryError, PermanentError)) else TemporaryError(str(err))
