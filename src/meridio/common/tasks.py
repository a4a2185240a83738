"""Task supervision: every long-lived task has a parent that logs its failure or unexpected end."""
from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from meridio.common import log as logmod

__all__ = ["guard", "run_until_signalled"]


async def guard(coro: Awaitable[Any], name: str, log: logmod.Logger = logmod.null,
                *, expect_end: bool = False) -> Any:
    """Await ``coro``; log (then re-raise) a failure, and log an end that was not expected."""
    try:
        result = await coro
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("taskFailed", task=name, error=repr(exc))
        raise
    if not expect_end:
        log.error("taskEnded", task=name, reason="unexpectedEnd")
    return result


def run_until_signalled(main: Callable[[asyncio.Event], Coroutine[Any, Any, int | None]]) -> int:
    """Run ``main(stop)`` on a fresh event loop; SIGTERM/SIGINT set ``stop``. Returns the exit code."""

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        code = await main(stop)
        return int(code or 0)

    return asyncio.run(runner())
