"""The NSP: serves a trench's configuration (``nsp.v1.ConfigurationManager``) and keeps the registry of
its targets (``nsp.v1.TargetRegistry``).

Pure core: :mod:`filters` (Meridio's watch filters), :mod:`watchers` (per-watcher latest-value
mailboxes with dedupe), :mod:`config` (configuration selections), :mod:`registry` (target registry
with keepalive deadlines). Adapters: :mod:`store` (sqlite), :mod:`source` (the ConfigMap-format file),
:mod:`targets` (the registry's owner task), :mod:`service` (gRPC servicers), :mod:`app` (the daemon).
"""
