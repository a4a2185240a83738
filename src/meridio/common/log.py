"""Structured JSON-lines logging with stable keys.

Every line is one JSON object: ``severity``, ``timestamp``, ``service_id``, ``message``, ``version`` and
then the bound and per-call fields (``event``, ``reason``, ``trench``, ``conduit``, ``stream``, ...).
Components create their logger once with :func:`setup` and pass bound loggers down::

    log = setup("nsp", level="INFO")
    log.bind(trench="trench-a").info("targetRegistered", target=target_id)

``SIGUSR1`` switches between the configured level and DEBUG, ``SIGUSR2`` to TRACE (Meridio's convention).
"""
from __future__ import annotations

import datetime
import json
import logging
import signal
import sys
from typing import Any, TextIO

from meridio import __version__

__all__ = ["Logger", "setup", "get", "TRACE", "null"]

TRACE = 5
logging.addLevelName(TRACE, "TRACE")
_SEVERITY = {TRACE: "trace", logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
             logging.ERROR: "error", logging.CRITICAL: "critical"}
_LEVELS = {"TRACE": TRACE, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
           "WARN": logging.WARNING, "ERROR": logging.ERROR}


class _JsonFormatter(logging.Formatter):
    def __init__(self, service_id: str) -> None:
        super().__init__()
        self.service_id = service_id

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, record.levelname.lower()),
            "timestamp": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds"),
            "service_id": self.service_id,
            "message": record.getMessage(),
            "version": __version__,
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = line.get("error") or repr(record.exc_info[1])
            line["stacktrace"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class Logger:
    """A logger carrying bound key/value fields. Cheap to bind; safe to share."""

    def __init__(self, logger: logging.Logger, fields: dict[str, Any] | None = None) -> None:
        self._logger = logger
        self._fields = fields or {}

    def bind(self, **fields: Any) -> Logger:
        return Logger(self._logger, {**self._fields, **fields})

    def _log(self, level: int, message: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, message, extra={"fields": {**self._fields, **fields}}, exc_info=exc_info)

    def trace(self, message: str, **fields: Any) -> None:
        self._log(TRACE, message, fields)

    def debug(self, message: str, **fields: Any) -> None:
        self._log(logging.DEBUG, message, fields)

    def info(self, message: str, **fields: Any) -> None:
        self._log(logging.INFO, message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._log(logging.WARNING, message, fields)

    def error(self, message: str, **fields: Any) -> None:
        self._log(logging.ERROR, message, fields)

    def exception(self, message: str, **fields: Any) -> None:
        self._log(logging.ERROR, message, fields, exc_info=True)

    def critical(self, message: str, **fields: Any) -> None:
        self._log(logging.CRITICAL, message, fields)

    def is_enabled(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)


def parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.strip().upper()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(_LEVELS)}") from None


def setup(component: str, level: str | int = "INFO", stream: TextIO | None = None,
          install_signals: bool = True) -> Logger:
    """Configure the process-wide root logger for ``component`` and return a :class:`Logger`."""
    configured = parse_level(level)
    root = logging.getLogger("meridio")
    root.handlers.clear()
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(_JsonFormatter(f"Meridio-{component}"))
    root.addHandler(handler)
    root.setLevel(configured)
    root.propagate = False
    if install_signals:
        def _toggle_debug(*_: object) -> None:
            root.setLevel(logging.DEBUG if root.level != logging.DEBUG else configured)

        def _trace(*_: object) -> None:
            root.setLevel(TRACE)

        signal.signal(signal.SIGUSR1, _toggle_debug)
        signal.signal(signal.SIGUSR2, _trace)
    return Logger(logging.getLogger(f"meridio.{component}"))


def get(component: str) -> Logger:
    """A logger for ``component`` that writes through whatever :func:`setup` configured (or nothing)."""
    return Logger(logging.getLogger(f"meridio.{component}"))


_null_logger = logging.getLogger("meridio.null")
_null_logger.addHandler(logging.NullHandler())
_null_logger.propagate = False
_null_logger.setLevel(logging.CRITICAL + 1)
null = Logger(_null_logger)
"""A logger that drops everything: the default for library code that takes a ``log`` argument."""
