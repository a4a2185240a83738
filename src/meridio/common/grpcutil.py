"""Small gRPC (``grpc.aio``) helpers shared by every component's servers and clients.

- :func:`create_server` / :func:`add_listener`: an aio server with sane options (requests of at most
  :data:`~meridio.common.bounds.MAX_MESSAGE_BYTES`, larger ones are ``RESOURCE_EXHAUSTED``; a request
  that does not parse is ``INVALID_ARGUMENT``, not grpc's ``UNKNOWN``; a unary handler is cancelled
  with ``DEADLINE_EXCEEDED`` after :data:`~meridio.common.bounds.MAX_UNARY_SECONDS`, whatever deadline
  the client set, or none), listening on
  ``host:port`` (``[::]:7778``, ``127.0.0.1:0``) or a unix socket (``unix:PATH`` / ``unix:///PATH``);
  a stale socket file is removed and its directory created first, as Meridio does.
- :func:`insecure_channel`: a client channel whose reconnect backoff is short (the default grows to
  120 s, far too slow to notice that a restarted NSP is back).
- :func:`channel` / :class:`RenewingChannel`: the same, with mutual TLS when a :class:`~meridio.common.tls.Tls`
  is given (every component-to-component connection): the server must present the DNS SAN of the
  component the client expects (:func:`meridio.common.identity.server_name`, set as the TLS target
  name, so ``unix:`` and TCP targets are checked alike). :class:`RenewingChannel` replaces a long-lived
  channel that is not READY once the certificate files changed, so a client never retries forever
  with a certificate that has expired.
- :func:`peer_identity`: the caller's verified :class:`~meridio.common.identity.Identity` (servers).
- :func:`map_errors`: a decorator for servicer methods (unary and server-streaming) that maps the
  project's error classes to status codes: :class:`InvalidArgument` / ``PermanentError`` →
  ``INVALID_ARGUMENT``, :class:`NotFound` → ``NOT_FOUND``, :class:`FailedPrecondition` →
  ``FAILED_PRECONDITION``, :class:`ResourceExhausted` → ``RESOURCE_EXHAUSTED``, :class:`Unauthenticated` →
  ``UNAUTHENTICATED``, :class:`PermissionDenied` → ``PERMISSION_DENIED``, ``TemporaryError`` →
  ``UNAVAILABLE``; anything else is logged with its traceback and answered ``INTERNAL`` with a
  one-line message.
- :func:`error_from_rpc`: the client side of the same mapping (an ``AioRpcError`` back to
  ``PermanentError`` / ``TemporaryError``).
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import os
import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio

from meridio.common import bounds
from meridio.common import identity as identitymod
from meridio.common import log as logmod
from meridio.common import tls as tlsmod
from meridio.common.retry import PermanentError, TemporaryError

__all__ = [
    "SERVER_OPTIONS", "CLIENT_OPTIONS", "InvalidArgument", "NotFound", "FailedPrecondition", "ResourceExhausted",
    "ListenError", "Unauthenticated", "PermissionDenied", "create_server", "channel", "RenewingChannel",
    "peer_identity", "add_listener", "listen_address", "unix_path", "insecure_channel", "status_for",
    "map_errors", "error_from_rpc", "call_with_errors", "TEMPORARY_CODES",
]

# Keepalive: the server tolerates client pings every 10 s even without calls in flight (a long-lived
# watch is "a call in flight", but an idle client channel must not be punished with GOAWAY).
SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", bounds.MAX_MESSAGE_BYTES),
]

# Clients ping every 30 s so a vanished peer (host down, netns deleted) is noticed within ~40 s
# even on an otherwise silent watch; reconnect backoff stays between 0.5 s and 5 s.
CLIENT_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    ("grpc.enable_retries", 0),
]

# Status codes that mean "the peer is not there (yet)": retry later.
TEMPORARY_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED,
    grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL,
})


class InvalidArgument(PermanentError):
    """The request is malformed; the message names the field and the rule."""


class NotFound(PermanentError):
    """The request names something that does not exist."""


class FailedPrecondition(TemporaryError):
    """A dependency is not there yet (retry later)."""


class ResourceExhausted(TemporaryError):
    """A limit of the server is reached (too many watch streams); retry later."""


class Unauthenticated(PermanentError):
    """The caller presented no verified identity (a plain connection, or a certificate without one)."""


class PermissionDenied(PermanentError):
    """The caller's identity may not do this; the message says which rule."""


class ListenError(OSError):
    """The server could not listen on the requested address."""


class _Undecodable:
    """Stands for a request that could not be parsed (so the handler can answer ``INVALID_ARGUMENT``)."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the caller's bad input
            return _Undecodable(exc)
    return parse


class _Bounds(grpc.aio.ServerInterceptor):
    """Every call of the server: an undecodable request is ``INVALID_ARGUMENT`` (grpc would answer
    ``UNKNOWN``); a unary handler running longer than ``seconds`` ends with ``DEADLINE_EXCEEDED``."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        handler = await continuation(details)
        if handler is None or handler.request_streaming:
            return handler
        method = str(details.method)
        if handler.unary_unary is not None and inspect.iscoroutinefunction(handler.unary_unary):
            return handler._replace(request_deserializer=_tolerant(handler.request_deserializer),
                                    unary_unary=self._unary(method, handler.unary_unary))
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            return handler._replace(request_deserializer=_tolerant(handler.request_deserializer),
                                    unary_stream=_stream(method, handler.unary_stream))
        return handler

    def _unary(self, method: str, inner: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        seconds = self._seconds

        async def bounded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await _reject_undecodable(method, request, context)
            limit = asyncio.timeout(seconds)
            try:
                async with limit:
                    return await inner(request, context)
            except TimeoutError:
                if not limit.expired():
                    raise
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"{method}: the server ends a call after "
                                                                   f"{seconds:g} s")
        return bounded


def _stream(method: str, inner: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def checked(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await _reject_undecodable(method, request, context)
        async for item in inner(request, context):
            yield item
    return checked


async def _reject_undecodable(method: str, request: Any, context: grpc.aio.ServicerContext) -> None:
    if isinstance(request, _Undecodable):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"{method}: the request is not a valid message ({request.error.__class__.__name__})")


def create_server(*, options: list[tuple[str, Any]] | None = None,
                  unary_seconds: float = bounds.MAX_UNARY_SECONDS) -> grpc.aio.Server:
    """A ``grpc.aio`` server with :data:`SERVER_OPTIONS` (plus ``options``) whose unary handlers are
    cancelled after ``unary_seconds``; add listeners next."""
    return grpc.aio.server(options=[*SERVER_OPTIONS, *(options or [])],
                           interceptors=[_Bounds(unary_seconds)])


def unix_path(address: str) -> str | None:
    """The socket path of ``unix:PATH`` / ``unix://PATH`` / ``unix:///PATH``; ``None`` for TCP addresses."""
    if not address.startswith("unix:"):
        return None
    rest = address[len("unix:"):]
    if rest.startswith("//"):
        rest = rest[2:]
    return rest


def listen_address(host: str, port: int) -> str:
    """The listen address for a ``host`` setting and a ``port`` setting: ``host`` itself when it is a
    unix socket address (``unix:/run/m/nsp.sock``; the port is then unused), else ``host:port``."""
    return host if unix_path(host) is not None else f"{host}:{port}"


def add_listener(server: grpc.aio.Server, address: str, *, tls: tlsmod.Tls | None = None,
                 log: logmod.Logger = logmod.null) -> int:
    """Listen on ``address``; returns the bound TCP port (useful with port 0), or 0 for a unix socket.

    With ``tls`` the port speaks only mutual TLS (a client without a certificate signed by the CA fails
    its handshake) and follows certificate rotations. Raises :class:`ListenError` naming the address if
    it cannot be bound.
    """
    path = unix_path(address)
    if path is not None:
        if not path:
            raise ListenError(f"{address!r}: a unix socket address needs a path")
        sock = pathlib.Path(path)
        sock.parent.mkdir(parents=True, exist_ok=True)
        if sock.is_socket() or sock.is_symlink():
            sock.unlink()  # a stale socket of a previous run
        elif sock.exists():
            raise ListenError(f"{address!r}: {path} exists and is not a socket")
        target = f"unix:{os.path.abspath(path)}"
    else:
        target = address
    try:
        if tls is None:
            port = server.add_insecure_port(target)
        else:
            port = server.add_secure_port(target, tls.server_credentials(log=log))
    except RuntimeError as exc:
        raise ListenError(f"cannot listen on {address!r}: {exc}") from None
    if path is None and port == 0:
        raise ListenError(f"cannot listen on {address!r}")
    return 0 if path is not None else port


def insecure_channel(address: str, *, options: list[tuple[str, Any]] | None = None) -> grpc.aio.Channel:
    """A client channel to ``host:port`` or ``unix:PATH`` with :data:`CLIENT_OPTIONS`.

    Create it inside the event loop that will use it (``grpc.aio`` channels bind to the running loop).
    """
    return grpc.aio.insecure_channel(address, options=[*CLIENT_OPTIONS, *(options or [])])


def channel(address: str, *, tls: tlsmod.Tls | None, server: identitymod.Component,
            options: list[tuple[str, Any]] | None = None) -> grpc.aio.Channel:
    """A client channel to a ``server`` component at ``address``: mutual TLS with ``tls``, plain without.

    Reads the current certificate files (``TlsError`` if they are unusable). Create it inside the
    event loop that will use it.
    """
    if tls is None:
        return insecure_channel(address, options=options)
    name = identitymod.server_name(server)
    opts = [*CLIENT_OPTIONS, ("grpc.ssl_target_name_override", name), ("grpc.default_authority", name),
            *(options or [])]
    return grpc.aio.secure_channel(address, tls.channel_credentials(), options=opts)


class RenewingChannel:
    """A long-lived client channel that is recreated after a certificate rotation when it is not READY.

    :meth:`get` returns the channel to use for the next call. A READY channel is kept (its connection
    was authenticated and goes on); one that is connecting or failing while the files have changed is
    replaced, and the old one is closed ``retire_after_s`` seconds later (calls still on it end first).
    """

    def __init__(self, address: str, *, tls: tlsmod.Tls | None, server: identitymod.Component,
                 retire_after_s: float = 30.0) -> None:
        self.address, self._tls, self._server = address, tls, server
        self._retire_after_s = retire_after_s
        self._channel: grpc.aio.Channel | None = None
        self._generation: tlsmod.Generation | None = None
        self._retired: set[asyncio.Task[None]] = set()

    @property
    def current(self) -> grpc.aio.Channel | None:
        return self._channel

    def get(self) -> grpc.aio.Channel:
        if self._channel is not None and self._tls is not None:
            generation = self._tls.generation()
            if generation != self._generation and \
                    self._channel.get_state(try_to_connect=False) != grpc.ChannelConnectivity.READY:
                try:
                    fresh = channel(self.address, tls=self._tls, server=self._server)
                except tlsmod.TlsError:
                    return self._channel  # files mid-replacement: try again on the next call
                self._retire(self._channel)
                self._channel, self._generation = fresh, generation
        if self._channel is None:
            self._generation = self._tls.generation() if self._tls is not None else None
            self._channel = channel(self.address, tls=self._tls, server=self._server)
        return self._channel

    def _retire(self, old: grpc.aio.Channel) -> None:
        async def later() -> None:
            await asyncio.sleep(self._retire_after_s)
            await old.close()
        task = asyncio.ensure_future(later())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def close(self) -> None:
        for task in list(self._retired):
            task.cancel()
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


def peer_identity(context: grpc.aio.ServicerContext) -> identitymod.Identity:
    """The caller's verified identity; :class:`Unauthenticated` if it has none."""
    try:
        found = identitymod.from_auth_context(context.auth_context())
    except identitymod.IdentityError as exc:
        raise Unauthenticated(f"caller identity: {exc}") from None
    if found is None:
        raise Unauthenticated("caller has no verified certificate (mutual TLS required)")
    return found


def status_for(exc: BaseException) -> grpc.StatusCode:
    """The status code an exception maps to (see the module docstring)."""
    if isinstance(exc, NotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, Unauthenticated):
        return grpc.StatusCode.UNAUTHENTICATED
    if isinstance(exc, PermissionDenied):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(exc, (InvalidArgument, PermanentError)):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, FailedPrecondition):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, ResourceExhausted):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(exc, TemporaryError):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


F = TypeVar("F", bound=Callable[..., Any])


def map_errors(log: logmod.Logger = logmod.null) -> Callable[[F], F]:
    """Decorate a servicer method so project errors become status codes (see the module docstring).

    Works for ``async def`` unary methods and ``async def ... yield`` server-streaming methods.
    """

    def decorate(method: F) -> F:
        name = method.__name__

        async def abort(context: grpc.aio.ServicerContext, exc: Exception) -> None:
            code = status_for(exc)
            if code is grpc.StatusCode.INTERNAL:
                log.exception("rpcFailed", rpc=name, error=repr(exc))
                await context.abort(code, f"internal error in {name}: {exc.__class__.__name__}: {exc}")
            log.debug("rpcRejected", rpc=name, code=code.name, error=str(exc))
            await context.abort(code, str(exc))

        if inspect.isasyncgenfunction(method):
            @functools.wraps(method)
            async def stream_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                try:
                    async for item in method(self, request, context):
                        yield item
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:  # noqa: BLE001 - mapped by class, INTERNAL is logged
                    await abort(context, exc)
            return stream_wrapper  # type: ignore[return-value]

        @functools.wraps(method)
        async def unary_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await method(self, request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # noqa: BLE001 - mapped by class, INTERNAL is logged
                await abort(context, exc)
        return unary_wrapper  # type: ignore[return-value]

    return decorate


def error_from_rpc(exc: grpc.aio.AioRpcError, what: str) -> Exception:
    """Turn a failed call into ``PermanentError`` (bad request) or ``TemporaryError`` (retry later)."""
    code = exc.code()
    detail = exc.details() or code.name
    if code in TEMPORARY_CODES:
        return TemporaryError(f"{what}: {code.name}: {detail}")
    return PermanentError(f"{what}: {code.name}: {detail}")


async def call_with_errors(what: str, call: Awaitable[Any]) -> Any:
    """Await a unary call, converting an ``AioRpcError`` with :func:`error_from_rpc`."""
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        raise error_from_rpc(exc, what) from None
