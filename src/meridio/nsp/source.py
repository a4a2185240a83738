"""Where the NSP's configuration comes from: a ConfigMap-format YAML file (local runtime), or the
ConfigMap itself through the Kubernetes API (:class:`ConfigMapSource`, in a cluster).

A source is anything with ``async run(apply)`` that calls ``apply(configuration)`` whenever a new
valid configuration is available (:class:`ConfigSource`); the Kubernetes operator work can add a
ConfigMap watcher beside :class:`FileSource` without touching the rest of the NSP.

:class:`FileSource` polls the file every ``interval`` seconds (200 ms by default). It compares the
file's *content* with what it saw last, not its stat data: a ConfigMap-sized file costs microseconds
to read, and content comparison catches everything — in-place rewrites, atomic rename-replace (as
editors and ``kubectl``-like tools do, a new inode), two same-size writes within one timestamp tick —
while ignoring a bare ``touch``. Rules:

- a changed, valid file → ``apply(config)`` (one ``configLoaded`` log line);
- a changed, invalid file → the last good configuration stays (an empty, truncated or incomplete
  document is invalid: see :func:`meridio.api.configmap.loads`); one ``configInvalid`` line with the
  error (no traceback), not repeated until the content changes again;
- a missing file → the last good configuration stays (an empty one at start); one
  ``configFileMissing`` line; the file is picked up when it appears.
"""
from __future__ import annotations

import asyncio
import enum
import hashlib
import json
from collections.abc import Callable
from typing import Protocol

from meridio.api import configmap, kubeapi, model
from meridio.common import log as logmod

__all__ = ["ConfigMapSource", "ConfigSource", "FileSource", "LoadResult", "Parser", "default_parser", "parser_for"]

Parser = Callable[[str, str], model.Configuration]
"""``parse(text, source_name) -> Configuration``; raises on invalid input."""

_MISSING = "missing"


class LoadResult(enum.Enum):
    """What became of a changed file content (counted for ``meridio_nsp_configuration_loads_total``)."""

    APPLIED = "applied"
    REJECTED = "rejected"


def default_parser(text: str, source: str) -> model.Configuration:
    """The ConfigMap codec's reader (:func:`meridio.api.configmap.loads`), for any trench."""
    return configmap.loads(text, source)


def parser_for(trench: str) -> Parser:
    """The ConfigMap reader of an NSP serving ``trench`` ('' = any trench): another trench is rejected."""
    if not trench:
        return default_parser
    return lambda text, source: configmap.loads(text, source, trench=trench)


class ConfigSource(Protocol):
    async def run(self, apply: Callable[[model.Configuration], None]) -> None:
        """Call ``apply`` with every new valid configuration, forever."""


class FileSource:
    def __init__(self, path: str, *, parse: Parser = default_parser, interval: float = 0.2,
                 log: logmod.Logger = logmod.null) -> None:
        self.path = path
        self.interval = interval
        self._parse = parse
        self._log = log.bind(file=path)
        self._seen: str | None = None  # digest of the content last looked at, or _MISSING
        self.loaded = False
        self.loads: dict[LoadResult, int] = dict.fromkeys(LoadResult, 0)
        """Changed contents seen, by result (a missing file is neither: nothing was loaded)."""

    def poll(self) -> model.Configuration | None:
        """Look at the file once; the configuration to serve if it changed and is valid, else ``None``."""
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            self._note_missing()
            return None
        except OSError as exc:
            self._rejected(f"unreadable:{exc.errno}", f"cannot read: {exc.strerror or exc}")
            return None
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._seen:
            return None
        self._seen = digest
        try:
            config = self._parse(data.decode("utf-8"), self.path)
        except Exception as exc:  # noqa: BLE001 - any parse failure keeps the last good configuration
            self.loads[LoadResult.REJECTED] += 1
            self._log.error("configInvalid", error=str(exc), reason="keepingLastGoodConfiguration"
                            if self.loaded else "servingEmptyConfiguration")
            return None
        self.loaded = True
        self.loads[LoadResult.APPLIED] += 1
        self._log.info("configLoaded", trench=config.trench.name if config.trench else None,
                       conduits=len(config.conduits), streams=len(config.streams), flows=len(config.flows),
                       vips=len(config.vips), attractors=len(config.attractors), gateways=len(config.gateways))
        return config

    def _note_missing(self) -> None:
        if self._seen != _MISSING:
            self._seen = _MISSING
            self._log.warning("configFileMissing", reason="keepingLastGoodConfiguration"
                              if self.loaded else "servingEmptyConfiguration")

    def _rejected(self, key: str, error: str) -> None:
        if self._seen != key:
            self._seen = key
            self.loads[LoadResult.REJECTED] += 1
            self._log.error("configInvalid", error=error, reason="keepingLastGoodConfiguration"
                            if self.loaded else "servingEmptyConfiguration")
        return None

    async def run(self, apply: Callable[[model.Configuration], None]) -> None:
        while True:
            config = self.poll()
            if config is not None:
                apply(config)
            await asyncio.sleep(self.interval)


class ConfigMapSource:
    """The trench's ConfigMap through the Kubernetes API: listed, then watched from that version on (a
    watch the server ends is resumed from the last version seen; a 410 Gone lists again). The same
    rules as :class:`FileSource`: a changed valid ``data`` is applied, an invalid one keeps the last good
    configuration (one ``configInvalid`` line), a deleted ConfigMap keeps it too (``configMapMissing``).
    The NSP's ServiceAccount needs only get/list/watch on ConfigMaps."""

    def __init__(self, creds: kubeapi.Credentials, namespace: str, name: str, *, parse: Parser = default_parser,
                 retry_s: float = 2.0, log: logmod.Logger = logmod.null) -> None:
        self.creds, self.namespace, self.name = creds, namespace, name
        self._parse = parse
        self._retry_s = retry_s
        self._log = log.bind(configMap=f"{namespace}/{name}")
        self._seen: str | None = None
        self.loaded = False
        self.loads: dict[LoadResult, int] = dict.fromkeys(LoadResult, 0)

    def consider(self, obj: dict[str, object] | None) -> model.Configuration | None:
        """The configuration to serve for this state of the ConfigMap (None: nothing new to serve)."""
        if obj is None:
            if self._seen != _MISSING:
                self._seen = _MISSING
                self._log.warning("configMapMissing", reason="keepingLastGoodConfiguration"
                                  if self.loaded else "servingEmptyConfiguration")
            return None
        text = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "data": obj.get("data") or {}}, sort_keys=True) + "\n"
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest == self._seen:
            return None
        self._seen = digest
        try:
            config = self._parse(text, f"configmap {self.namespace}/{self.name}")
        except Exception as exc:  # noqa: BLE001 - any parse failure keeps the last good configuration
            self.loads[LoadResult.REJECTED] += 1
            self._log.error("configInvalid", error=str(exc)[:1024], reason="keepingLastGoodConfiguration"
                            if self.loaded else "servingEmptyConfiguration")
            return None
        self.loaded = True
        self.loads[LoadResult.APPLIED] += 1
        self._log.info("configLoaded", trench=config.trench.name if config.trench else None,
                       conduits=len(config.conduits), streams=len(config.streams), flows=len(config.flows))
        return config

    async def run(self, apply: Callable[[model.Configuration], None]) -> None:
        path = f"/api/v1/namespaces/{self.namespace}/configmaps"
        selector = {"fieldSelector": f"metadata.name={self.name}"}
        while True:
            try:
                async with kubeapi.Client(self.creds) as api:
                    listed = await api.get(path, **selector)
                    items = listed.get("items") or []
                    self._emit(items[0] if items else None, apply)
                    version = str(listed["metadata"]["resourceVersion"])
                    while True:
                        async for kind, obj in api.watch(path, version, params=selector):
                            version = str(obj.get("metadata", {}).get("resourceVersion", version))
                            if kind != "BOOKMARK":
                                self._emit(None if kind == "DELETED" else obj, apply)
            except kubeapi.ApiError as exc:
                if exc.status != 410:
                    self._log.warning("configMapWatchFailed", error=str(exc)[:512])
                    await asyncio.sleep(self._retry_s)
            except (TimeoutError, OSError, ValueError) as exc:
                self._log.warning("configMapWatchFailed", error=str(exc)[:512])
                await asyncio.sleep(self._retry_s)

    def _emit(self, obj: dict[str, object] | None, apply: Callable[[model.Configuration], None]) -> None:
        config = self.consider(obj)
        if config is not None:
            apply(config)
