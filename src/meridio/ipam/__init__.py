"""IPAM: hands out conduit, node and address prefixes per trench (``meridio run ipam``).

Layers, from the inside out: :mod:`prefixes` (first-fit address arithmetic), :mod:`tree` (the prefix
hierarchy and the pure planners of every operation), :mod:`store` (sqlite persistence),
:mod:`registry` (the one owner of the state, on the event loop), :mod:`servicer` (``ipam.v1.Ipam``
over gRPC), :mod:`conduits` (conduit prefixes from the NSP watch) and :mod:`app` (settings, wiring).
"""
