"""Limits on what a gRPC request may carry, and quoting input into error messages without echoing it.

Every servicer checks the requests it is given against these bounds at the edge (the README's
"Limits" table lists them) and quotes rejected values with :func:`quote`, so an error never carries
more than :data:`QUOTE_CHARS` characters of the caller's input, however large it was.

The checks raise ``error(message)``: each caller passes its own ``PermanentError`` subclass (the NSP's
``InvalidTarget``, IPAM's ``RequestError``, ...), which its servicer maps to ``INVALID_ARGUMENT``.
"""
from __future__ import annotations

import re
from collections.abc import Callable

__all__ = [
    "QUOTE_CHARS", "MAX_NAME_CHARS", "MAX_MESSAGE_BYTES", "MAX_UNARY_SECONDS", "quote", "check_name",
    "check_length", "check_count", "Error",
]

QUOTE_CHARS = 64
"""At most this many characters of a value are quoted in an error message."""

MAX_NAME_CHARS = 253
"""A resource name (trench, conduit, stream, node, target): a DNS-1123 subdomain, as Kubernetes names."""

MAX_MESSAGE_BYTES = 64 * 1024
"""The largest request a component's gRPC server receives (``grpc.max_receive_message_length``);
the largest legal request (a target with 32 IPs and 16 context entries) is about 5 KiB."""

MAX_UNARY_SECONDS = 10.0
"""A unary call's handler is cancelled after this long (``DEADLINE_EXCEEDED``), whatever the
client's deadline (or its lack of one)."""

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")

Error = Callable[[str], Exception]


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """``repr`` of ``value`` (a string: at most ``limit`` characters of it, then how long it was)."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit + 2 else f"{text[:limit]}... ({len(text)} characters)"


def check_length(field: str, value: str, limit: int, error: Error) -> str:
    """``value`` if it has at most ``limit`` characters, else ``error`` naming ``field``."""
    if len(value) > limit:
        raise error(f"{field}: at most {limit} characters, got {len(value)} ({quote(value)})")
    return value


def check_count(field: str, n: int, limit: int, error: Error) -> None:
    """Nothing if ``n`` (entries of a repeated field) is at most ``limit``, else ``error`` naming ``field``."""
    if n > limit:
        raise error(f"{field}: at most {limit} entries, got {n}")


def check_name(field: str, value: str, error: Error, *, allow_empty: bool = False) -> str:
    """``value`` if it is a resource name (DNS-1123 subdomain, at most 253 characters), else ``error``.

    ``allow_empty``: an empty value is accepted (a wildcard in a watch filter, a missing parent).
    """
    if not value:
        if allow_empty:
            return value
        raise error(f"{field}: must not be empty")
    check_length(field, value, MAX_NAME_CHARS, error)
    if not _NAME.match(value):
        raise error(f"{field}: {quote(value)} is not a valid name (lower case alphanumeric characters, '-' or "
                    "'.', starting and ending with an alphanumeric character)")
    return value
