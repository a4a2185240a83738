"""What ``/proc/<pid>/stat`` says about a process: its state and its kernel start time.

The start time (clock ticks since boot) tells a process apart from a later one that reuses its pid;
the state tells an exited process still waiting for its parent (a zombie, ``Z``) from a live one.
"""
from __future__ import annotations

import dataclasses

__all__ = ["ProcStat", "running", "start_time", "stat"]


@dataclasses.dataclass(frozen=True)
class ProcStat:
    state: str
    start_time: int

    @property
    def exited(self) -> bool:
        return self.state in ("Z", "X")


def stat(pid: int, proc: str = "/proc") -> ProcStat | None:
    """State and start time of ``pid``; ``None`` if there is no such process."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: the fields after it start after the last ")".
    rest = text[text.rfind(")") + 2:].split()
    if len(rest) <= 19:
        return None
    return ProcStat(rest[0], int(rest[19]))


def start_time(pid: int, proc: str = "/proc") -> int | None:
    """Field 22 (kernel start time) of ``pid``, zombies included; ``None`` if there is no such process."""
    st = stat(pid, proc)
    return None if st is None else st.start_time


def running(pid: int, proc: str = "/proc") -> bool:
    """Whether ``pid`` exists and has not exited (a zombie has)."""
    st = stat(pid, proc)
    return st is not None and not st.exited
