"""BIRD 2 as a library, with no I/O: what the frontends and the gateway routers are told, and what BIRD answers.

- :mod:`~meridio.bird.birdconf`: the frontend's ``bird.conf`` (BGP/static+BFD gateways, VIP filters,
  kernel export to table 4096) and the shared configuration types (families, BFD, timers);
- :mod:`~meridio.bird.gatewayconf`: a gateway router's ``bird.conf`` (the external side of the local
  runtime and of the tests: dynamic BGP neighbours, BFD, ECMP, a default route);
- :mod:`~meridio.bird.birdc`: the control-socket protocol (``birdc``'s): command encoding, a reply
  parser that takes bytes in any chunking, and decoders of ``show protocols``/``show bfd sessions``.

Pure: it imports only :mod:`meridio.common` and :mod:`meridio.api`; :mod:`meridio.kernel.bird` runs the
BIRD process and owns its socket; :mod:`meridio.frontend` and the local runtime's routers render with it.
"""
