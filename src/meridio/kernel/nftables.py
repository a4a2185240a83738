"""A thin ctypes binding of ``libnftables.so.1`` (nftables 1.0.6): text and JSON commands, one
transaction per call.

Every buffer passed to :meth:`Nft.run` is one nftables batch: the kernel applies all of it or none
of it, so a failing command leaves the previous ruleset intact. A context talks to the network
namespace its netlink socket was opened in: the calling thread's at construction, or the named
namespace with ``Nft(netns="x")`` (the socket is opened from a helper thread switched into ``x``;
every later call, from any thread, then acts in ``x``).

Used by the load balancer (:mod:`meridio.loadbalancer.kernelstate`) and by tests/benchmarks that
read counters. Nothing here knows about Meridio.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import threading
from collections.abc import Sequence
from typing import Any

from meridio.kernel import netns as netnsmod

__all__ = ["NftError", "Nft", "LIBRARY"]

LIBRARY = "libnftables.so.1"

_OUTPUT_JSON = 1 << 4
_OUTPUT_HANDLE = 1 << 3

_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


class NftError(RuntimeError):
    """nftables refused a command; nothing of that buffer was applied."""

    def __init__(self, rc: int, error: str, commands: str) -> None:
        self.rc = rc
        self.error = error.strip()
        self.commands = commands
        super().__init__(self.error.splitlines()[0] if self.error else f"nftables returned {rc}")


def _library() -> ctypes.CDLL:
    global _lib
    with _lib_lock:
        if _lib is None:
            lib = ctypes.CDLL(ctypes.util.find_library("nftables") or LIBRARY)
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
                getattr(lib, name).argtypes = [ctypes.c_void_p]
            for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
                getattr(lib, name).argtypes = [ctypes.c_void_p]
                getattr(lib, name).restype = ctypes.c_char_p
            lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
            lib.nft_ctx_set_dry_run.argtypes = [ctypes.c_void_p, ctypes.c_bool]
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
            _lib = lib
        return _lib


class Nft:
    """One libnftables context. Thread-safe (calls are serialised); close it when done."""

    def __init__(self, *, netns: str | None = None) -> None:
        self._lib = _library()
        self._lock = threading.Lock()
        self.netns = netns
        self._ctx = self._new_context(netns)

    def _new_context(self, netns: str | None) -> int:
        if netns is None:
            return self._create()
        box: dict[str, Any] = {}

        def inside() -> None:
            try:
                with netnsmod.entered(netns):
                    box["ctx"] = self._create()
            except BaseException as exc:  # handed to the caller below
                box["error"] = exc

        helper = threading.Thread(target=inside, name=f"nft-ctx-{netns}")
        helper.start()
        helper.join()
        if "error" in box:
            raise box["error"]
        return int(box["ctx"])

    def _create(self) -> int:
        ctx = self._lib.nft_ctx_new(0)
        if not ctx:
            raise OSError("nft_ctx_new failed")
        self._lib.nft_ctx_buffer_output(ctx)
        self._lib.nft_ctx_buffer_error(ctx)
        return int(ctx)

    def close(self) -> None:
        with self._lock:
            if self._ctx:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = 0

    def __enter__(self) -> Nft:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def run(self, commands: str | Sequence[str], *, json_output: bool = False, dry_run: bool = False,
            handles: bool = False) -> str:
        """Run a buffer of commands (text, or a JSON document) as one transaction; return the output.

        Raises :class:`NftError` with nftables' message when anything in the buffer is refused; in
        that case nothing of the buffer was applied.
        """
        text = commands if isinstance(commands, str) else "\n".join(commands)
        flags = (_OUTPUT_JSON if json_output else 0) | (_OUTPUT_HANDLE if handles else 0)
        with self._lock:
            if not self._ctx:
                raise RuntimeError("nftables context is closed")
            self._lib.nft_ctx_output_set_flags(self._ctx, flags)
            self._lib.nft_ctx_set_dry_run(self._ctx, dry_run)
            try:
                rc = self._lib.nft_run_cmd_from_buffer(self._ctx, text.encode())
                out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode(errors="replace")
                err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
            finally:
                self._lib.nft_ctx_set_dry_run(self._ctx, False)
        if rc != 0:
            raise NftError(rc, err, text)
        return out

    def apply(self, commands: str | Sequence[str]) -> None:
        """Apply commands atomically (all or nothing)."""
        if commands:
            self.run(commands)

    def check(self, commands: str | Sequence[str]) -> None:
        """Parse and evaluate commands without applying them (``nft -c``); raise :class:`NftError`."""
        self.run(commands, dry_run=True)

    def run_json(self, document: dict[str, Any]) -> dict[str, Any]:
        """Run a JSON command document (``{"nftables": [...]}``) as one transaction; return its output."""
        out = self.run(json.dumps(document), json_output=True)
        return json.loads(out) if out.strip() else {"nftables": []}

    def list_json(self, what: str) -> list[dict[str, Any]]:
        """``nft -j list <what>`` as the list of objects (without the metainfo entry)."""
        out = self.run(f"list {what}", json_output=True)
        if not out.strip():
            return []
        return [obj for obj in json.loads(out).get("nftables", []) if "metainfo" not in obj]

    def table_exists(self, family: str, name: str) -> bool:
        out = self.run(f"list tables {family}")
        return any(line.split()[-1] == name for line in out.splitlines() if line.startswith("table"))
