"""A terminal refresh loop (``meridio status --watch``): draw a frame, wait, draw again, until interrupted.

On a terminal each frame replaces the previous one (ANSI: cursor home, clear screen); otherwise (a pipe,
a log file) frames follow each other, separated by one line, so nothing is lost. Ctrl-C and SIGTERM end
the loop quietly with status 0. The frame, the clock and the sleep are passed in, so the loop is tested
without a daemon or real time.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["CLEAR", "SEPARATOR", "run"]

CLEAR = "\x1b[H\x1b[2J"
"""Cursor to the top left, then erase the screen."""
SEPARATOR = "-" * 72


def run(frame: Callable[[], str], *, interval_s: float = 2.0, out: TextIO | None = None,
        sleep: Callable[[float], None] | None = None, clock: Callable[[], float] | None = None) -> int:
    """Write ``frame()`` every ``interval_s`` seconds to ``out`` (default stdout) until Ctrl-C/SIGTERM; 0.

    ``sleep`` and ``clock`` default to :func:`time.sleep` and :func:`time.time`, looked up per call.
    """
    stream = out if out is not None else sys.stdout
    pause = sleep or time.sleep
    now = clock or time.time
    tty = stream.isatty()
    # SIGTERM (e.g. `timeout 5 meridio status --watch`) ends the loop like Ctrl-C; only the main thread may set it
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if main else None
    try:
        first = True
        while True:
            header = f"every {interval_s:g}s, {time.strftime('%H:%M:%S', time.localtime(now()))}  (Ctrl-C ends)\n\n"
            body = frame()
            if tty:
                stream.write(CLEAR)
            elif not first:
                stream.write(SEPARATOR + "\n")
            stream.write(header + body.rstrip("\n") + "\n")
            stream.flush()
            first = False
            pause(interval_s)
    except KeyboardInterrupt:
        return 0
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
