"""The frontend's desired BIRD configuration from its inputs (pure).

Inputs: the attractor the NSP serves (VIPs and gateways, ``nsp.v1`` model), the MD5 secrets available
locally, and whether the VIPs may be announced (:mod:`announce`). Output: a
:class:`~meridio.bird.birdconf.BirdConfig` plus the VIPs and gateways left out, each with a message
naming the field and the rule. As in Meridio, a gateway whose secret key cannot be loaded is left out
(the others still work); defaults for zero fields come from the frontend's settings.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping

from meridio.api import model
from meridio.bird.birdconf import Bfd, BirdConfig, BirdGateway, ConfigError, GatewayProtocol, IPNetwork

__all__ = ["GatewayDefaults", "Skipped", "Desired", "gateway_from_model", "vip_from_model", "desired",
           "Secrets"]

Secrets = Mapping[str, Mapping[str, str]]
"""``{secret name: {key: value}}``, as a Kubernetes Secret volume per secret."""


@dataclasses.dataclass(frozen=True)
class GatewayDefaults:
    """Used where a gateway leaves a field at 0 (Meridio's ``NFE_LOCAL_AS`` ... env defaults)."""

    local_asn: int = 8103
    remote_asn: int = 4248829953
    local_port: int = 10179
    remote_port: int = 10179


@dataclasses.dataclass(frozen=True)
class Skipped:
    kind: str
    """``gateway`` or ``vip``."""
    name: str
    error: str


@dataclasses.dataclass(frozen=True)
class Desired:
    bird: BirdConfig
    skipped: tuple[Skipped, ...] = ()

    @property
    def vips(self) -> tuple[IPNetwork, ...]:
        return self.bird.vips


def _secret(gw: model.Gateway, secrets: Secrets) -> str | None:
    auth = gw.bgp_auth
    if auth is None or (not auth.key_name and not auth.key_source):
        return None
    secret = secrets.get(auth.key_source)
    if secret is None:
        raise ConfigError(f"gateway {gw.name}: bgp-auth key-source: secret {auth.key_source!r} not found")
    if auth.key_name not in secret:
        raise ConfigError(f"gateway {gw.name}: bgp-auth key-name: secret {auth.key_source!r} "
                          f"has no key {auth.key_name!r}")
    return secret[auth.key_name]


def _bfd(gw: model.Gateway) -> Bfd | None:
    if not gw.bfd:
        return None
    spec = gw.bfd_spec or model.BfdSpec(0, 0, 0)
    try:
        return Bfd(min_rx_ms=spec.min_rx, min_tx_ms=spec.min_tx, multiplier=spec.multiplier)
    except ConfigError as exc:
        raise ConfigError(f"gateway {gw.name}: {exc}") from None


def gateway_from_model(gw: model.Gateway, defaults: GatewayDefaults, secrets: Secrets) -> BirdGateway:
    """Resolve one gateway (defaults, password); :class:`ConfigError` names the field and the rule."""
    try:
        address = ipaddress.ip_address(gw.address)
    except ValueError:
        raise ConfigError(f"gateway {gw.name}: address {gw.address!r}: invalid IP format") from None
    try:
        protocol = GatewayProtocol((gw.protocol or "bgp").lower())
    except ValueError:
        raise ConfigError(f"gateway {gw.name}: protocol {gw.protocol!r}: must be bgp or static") from None
    password = _secret(gw, secrets) if protocol is GatewayProtocol.BGP else None
    try:
        return BirdGateway(
            name=gw.name, address=address, protocol=protocol, local_asn=gw.local_asn or defaults.local_asn,
            remote_asn=gw.remote_asn or defaults.remote_asn, local_port=gw.local_port or defaults.local_port,
            remote_port=gw.remote_port or defaults.remote_port, hold_time_s=gw.hold_time, bfd=_bfd(gw),
            password=password)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith("gateway ") else f"gateway {gw.name}: {message}") from None


def vip_from_model(vip: model.Vip) -> IPNetwork:
    try:
        return ipaddress.ip_network(vip.address, strict=True)
    except ValueError:
        raise ConfigError(f"vip {vip.name}: address {vip.address!r}: must be a valid network prefix") from None


def desired(base: BirdConfig, attractor: model.Attractor | None, secrets: Secrets, *,
            defaults: GatewayDefaults = GatewayDefaults(), advertise: bool = False) -> Desired:
    """``base`` (interface, router id, tables, logging, timers) with the attractor's VIPs and gateways."""
    if attractor is None:
        return Desired(dataclasses.replace(base, vips=(), gateways=(), advertise_vips=False))
    skipped: list[Skipped] = []
    vips: list[IPNetwork] = []
    for vip in attractor.vips:
        try:
            network = vip_from_model(vip)
        except ConfigError as exc:
            skipped.append(Skipped("vip", vip.name, str(exc)))
            continue
        if network not in vips:
            vips.append(network)
    gateways: list[BirdGateway] = []
    for gw in attractor.gateways:
        try:
            gateways.append(gateway_from_model(gw, defaults, secrets))
        except ConfigError as exc:
            skipped.append(Skipped("gateway", gw.name, str(exc)))
    bird = dataclasses.replace(base, vips=tuple(sorted(vips, key=lambda n: (n.version, n))),
                               gateways=tuple(gateways), advertise_vips=advertise and bool(vips))
    return Desired(bird, tuple(skipped))
