"""Sans-IO codec of BIRD 2's control-socket protocol (what ``birdc`` speaks), and reply decoders.

The protocol (BIRD ``doc/reply_codes``, ``client/client.c``): the client sends one command per line; BIRD
answers with lines ``DDDD-text`` (more lines follow), ``DDDD text`` (the last line of the reply) or
`` text`` (continuation of the previous line's code). ``+text`` lines are spontaneous (log messages after
``echo``) and may arrive at any time, also between the lines of a reply. Code classes: ``0xxx`` action done,
``1xxx`` table entry, ``2xxx`` table heading, ``8xxx`` run-time error, ``9xxx`` parse error.

:class:`ReplyParser` turns bytes into :class:`Reply` and :class:`Notice` events, whatever the chunking;
the decoders (:func:`protocols`, :func:`bfd_sessions`, :func:`configure_result`) turn replies into values.
No I/O here: :mod:`meridio.kernel.bird` owns the socket.
"""
from __future__ import annotations

import dataclasses
import re

__all__ = [
    "ProtocolError", "CommandError", "Line", "Reply", "Notice", "ReplyParser", "encode_command", "quote",
    "ProtocolInfo", "RouteCounts", "BfdSession", "ConfigureResult",
    "protocols", "bfd_sessions", "configure_result", "CONFIGURE_OK_CODES",
]

CONFIGURE_OK_CODES = frozenset({3, 4, 5, 18, 19})
"""Reconfigured, in progress, queued, confirmed, nothing to do (``cmd_reconfig_msg``)."""
NO_PROTOCOLS_MATCH = 8003

_CODED = re.compile(r"^(\d{4})([ -])(.*)$")


class ProtocolError(ValueError):
    """BIRD sent something that is not its reply protocol (or a command could not be encoded)."""


class CommandError(Exception):
    """BIRD answered a command with an error (8xxx run-time, 9xxx parse); carries BIRD's own message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"BIRD error {code}: {message}")
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class Line:
    code: int
    text: str


@dataclasses.dataclass(frozen=True)
class Reply:
    """One complete reply: every line up to and including the one with a space after its code."""

    lines: tuple[Line, ...]

    @property
    def code(self) -> int:
        """The code of the final line (``0`` for a table reply ending in ``0000``)."""
        return self.lines[-1].code

    @property
    def is_error(self) -> bool:
        return any(line.code >= 8000 for line in self.lines)

    @property
    def error(self) -> str:
        """BIRD's own error message(s), or ``""``."""
        return "; ".join(line.text for line in self.lines if line.code >= 8000)

    def texts(self, code: int) -> list[str]:
        return [line.text for line in self.lines if line.code == code]

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


@dataclasses.dataclass(frozen=True)
class Notice:
    """A spontaneous line (``+text``): a BIRD log message delivered after ``echo``."""

    text: str


class ReplyParser:
    """Feed it bytes as they arrive; get back complete :class:`Reply` and :class:`Notice` events."""

    def __init__(self) -> None:
        self._buffer = b""
        self._lines: list[Line] = []
        self._last_code: int | None = None

    def feed(self, data: bytes) -> list[Reply | Notice]:
        self._buffer += data
        events: list[Reply | Notice] = []
        while (end := self._buffer.find(b"\n")) >= 0:
            raw, self._buffer = self._buffer[:end], self._buffer[end + 1:]
            event = self._line(raw.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events

    @property
    def idle(self) -> bool:
        """No partial reply pending."""
        return not self._lines and not self._buffer

    def _line(self, text: str) -> Reply | Notice | None:
        if text.startswith("+"):
            return Notice(text[1:])
        if text.startswith(" "):
            if self._last_code is None:
                raise ProtocolError(f"continuation line outside a reply: {text!r}")
            self._lines.append(Line(self._last_code, text[1:]))
            return None
        m = _CODED.match(text)
        if not m:
            raise ProtocolError(f"not a BIRD reply line: {text!r}")
        code, final = int(m.group(1)), m.group(2) == " "
        self._lines.append(Line(code, m.group(3)))
        self._last_code = code
        if not final:
            return None
        reply, self._lines, self._last_code = Reply(tuple(self._lines)), [], None
        return reply


def quote(value: str) -> str:
    """A BIRD string literal (no escapes exist in BIRD's lexer, so ``"`` and newlines are refused)."""
    if any(c in value for c in '"\n\r'):
        raise ProtocolError(f"cannot quote {value!r} for BIRD: contains a double quote or a newline")
    return f'"{value}"'


def encode_command(command: str) -> bytes:
    if "\n" in command or "\r" in command:
        raise ProtocolError("a BIRD command is one line")
    return command.encode() + b"\n"


# --- decoders --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RouteCounts:
    imported: int = 0
    exported: int = 0
    preferred: int = 0


@dataclasses.dataclass(frozen=True)
class ProtocolInfo:
    """One row of ``show protocols`` (+ the details of ``show protocols all``)."""

    name: str
    proto: str
    table: str
    state: str
    """``up``, ``start``, ``stop``, ``down``, ``flush``."""
    since: str
    """When the protocol entered its state (BIRD's ``timeformat protocol``, default ``HH:MM:SS.mmm``)."""
    info: str
    """``Established``, ``Active``, ``Connect``, ``Error: ...``, ...; empty for most non-BGP protocols."""
    details: tuple[str, ...] = ()
    routes: RouteCounts | None = None

    @property
    def bgp_state(self) -> str | None:
        for line in self.details:
            key, _, value = line.strip().partition(":")
            if key == "BGP state":
                return value.strip()
        return None

    @property
    def last_error(self) -> str | None:
        for line in self.details:
            key, _, value = line.strip().partition(":")
            if key == "Last error":
                return value.strip()
        return None


_ROUTES = re.compile(r"Routes:\s+(\d+) imported, (?:(\d+) filtered, )?(\d+) exported, (\d+) preferred")


def protocols(reply: Reply) -> list[ProtocolInfo]:
    """Decode ``show protocols [all] [pattern]``; ``No protocols match`` gives ``[]``."""
    if reply.code == NO_PROTOCOLS_MATCH:
        return []
    _raise_if_error(reply)
    out: list[ProtocolInfo] = []
    details: list[str] = []
    for line in reply.lines:
        if line.code == 1002:
            _flush_protocol(out, details)
            out.append(_protocol_row(line.text))
            details = []
        elif line.code == 1006:
            details.append(line.text)
    _flush_protocol(out, details)
    return out


def _protocol_row(text: str) -> ProtocolInfo:
    parts = text.split(None, 5)
    if len(parts) < 5:
        raise ProtocolError(f"unexpected protocol row: {text!r}")
    info = parts[5].strip() if len(parts) > 5 else ""
    return ProtocolInfo(name=parts[0], proto=parts[1], table=parts[2], state=parts[3], since=parts[4], info=info)


def _flush_protocol(out: list[ProtocolInfo], details: list[str]) -> None:
    if not out or not details:
        return
    counts = [m for m in (_ROUTES.search(d) for d in details) if m]
    routes = None
    if counts:
        routes = RouteCounts(sum(int(m.group(1)) for m in counts), sum(int(m.group(3)) for m in counts),
                             sum(int(m.group(4)) for m in counts))
    out[-1] = dataclasses.replace(out[-1], details=tuple(d for d in details if d.strip()), routes=routes)


@dataclasses.dataclass(frozen=True)
class BfdSession:
    protocol: str
    address: str
    interface: str
    state: str
    """``Up``, ``Down``, ``Init``, ``AdminDown``."""
    since: str
    interval_s: float
    timeout_s: float


def bfd_sessions(reply: Reply) -> list[BfdSession]:
    """Decode ``show bfd sessions [name]``."""
    if reply.code == NO_PROTOCOLS_MATCH:
        return []
    _raise_if_error(reply)
    out: list[BfdSession] = []
    protocol = ""
    for line in reply.lines:
        if line.code != 1020:
            continue
        text = line.text.strip()
        if text.endswith(":") and " " not in text:
            protocol = text[:-1]
            continue
        parts = text.split()
        if not parts or parts[0] == "IP":
            continue
        if len(parts) != 6:
            raise ProtocolError(f"unexpected BFD session row: {text!r}")
        out.append(BfdSession(protocol, parts[0], parts[1], parts[2], parts[3], float(parts[4]), float(parts[5])))
    return out


@dataclasses.dataclass(frozen=True)
class ConfigureResult:
    ok: bool
    message: str
    """BIRD's final line (``Reconfigured``) or its error (``<file>:<line>:<col> <what>``)."""


def configure_result(reply: Reply) -> ConfigureResult:
    """Decode ``configure [check] "<file>"``: accepted, or refused with BIRD's message."""
    if reply.is_error:
        return ConfigureResult(False, reply.error)
    last = reply.lines[-1]
    return ConfigureResult(last.code in CONFIGURE_OK_CODES or last.code == 20, last.text)


def _raise_if_error(reply: Reply) -> None:
    if reply.is_error:
        raise CommandError(reply.code, reply.error)
