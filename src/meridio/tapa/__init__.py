"""TAPA: the sidecar that lets a target application open and close streams (``ambassador.v1.Tap``).

Pure core: :mod:`refs` (stream references, request parsing, Watch filters), :mod:`machine` (the
per-stream state machine), :mod:`identifiers` (identifier allocation), :mod:`manager` (one trench,
its conduits and streams, as commands). Adapters: :mod:`opener` (the open/refresh algorithm against the
NSP port), :mod:`nspport` and :mod:`linkport` (NSP and proxy link clients), :mod:`tap` (the asyncio
owner that executes commands), :mod:`service` (the gRPC servicer), :mod:`app` (``meridio run tapa``).
"""
