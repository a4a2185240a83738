"""The proxy: one per node and conduit, the conduit's forwarder (reference §3.8, DESIGN §2).

It owns ``bridge0`` in its own network namespace, links it to every load-balancer replica of the conduit
(announced in NSP as ``LOADBALANCER`` targets) and, through the link service (``meridio.proxy.v1``), to
every target namespace on its node. Egress from the targets' VIPs leaves through table 1, a multipath
default route over all LB replicas. Pure planning lives in :mod:`names`, :mod:`plan`, :mod:`release` and
:mod:`tokens`; :mod:`dataplane` and :mod:`credentials` touch the host; :mod:`links` owns the state;
:mod:`service` and :mod:`app` are the thin edges; :mod:`linkclient` is what a TAPA imports.
"""
