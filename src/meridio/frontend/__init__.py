"""The frontend: attracts VIP traffic from external gateways with BIRD 2 (BGP, BFD, static routes).

Pure core: :mod:`birdconf` (bird.conf renderer), :mod:`gatewayconf` (the external gateway's bird.conf,
reused by the local runtime), :mod:`birdc` (sans-IO parser of BIRD's control-socket replies),
:mod:`gateways` (gateway supervision), :mod:`desired` (NSP attractor + secrets → bird config) and
:mod:`announce` (when VIPs may be announced). Adapters: :mod:`meridio.kernel.bird` (BIRD process and
control socket), :mod:`viprules`, :mod:`lbclient`, :mod:`secrets`, :mod:`service`, :mod:`app`.
"""
