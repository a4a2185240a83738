"""The frontend: attracts VIP traffic from external gateways with BIRD 2 (BGP, BFD, static routes).

Pure core: :mod:`gateways` (gateway supervision), :mod:`desired` (NSP attractor + secrets → bird config)
and :mod:`announce` (when VIPs may be announced), over the BIRD library :mod:`meridio.bird` (bird.conf
rendering, the control-socket codec). Adapters: :mod:`meridio.kernel.bird` (BIRD process and control
socket), :mod:`viprules`, :mod:`lbclient`, :mod:`secrets`, :mod:`service`, :mod:`app`.
"""
