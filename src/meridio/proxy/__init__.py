"""The proxy: one per node and conduit, the conduit's forwarder (reference §3.8, DESIGN §2).

It owns ``bridge0`` in its own network namespace, links it to every load-balancer replica of the conduit
(announced in NSP as ``LOADBALANCER`` targets) and, through the link service (``meridio.proxy.v1``), to
every target namespace on its node. Egress from the targets' VIPs leaves through table 1, a multipath
default route over all LB replicas.

- pure core: :mod:`names` (interface names, aliases, request checks), :mod:`plan` (desired links,
  egress and target state), :mod:`deadlines` (delayed release, orphans), :mod:`tokens` (credentials);
- host adapters: :mod:`dataplane` (netlink via :mod:`meridio.kernel.netlink`), :mod:`credentials` (the
  credential socket, over :mod:`meridio.kernel.pins`: SO_PEERCRED + pidfd + pinned namespace),
  :mod:`addressing` (IPAM client);
- state, one owner behind one lock: :mod:`forwarder` over :mod:`lblinks` and :mod:`targets`;
- edges: :mod:`service` (gRPC servicer), :mod:`app` (``meridio run proxy``);
- a TAPA connects its own namespace with :mod:`meridio.api.linkclient`; links are
  :class:`meridio.api.link.Link` on both sides.
"""
