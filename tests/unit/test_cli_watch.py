"""``meridio status --watch``: the refresh loop with a fake frame, clock and sleep, and the CLI wired to it
with a fake daemon answer (no environment, no real time)."""
from __future__ import annotations

import io
import os
import signal

import pytest

from meridio.cli import get, watch
from meridio.cli import main as climain
from meridio.cli.common import CliError
from meridio.runtime.local import protocol as proto


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _stop_after(n: int, calls: list[float]):  # type: ignore[no-untyped-def]
    def sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) >= n:
            raise KeyboardInterrupt
    return sleep


def test_watch_draws_one_frame_per_interval_and_ends_quietly_on_ctrl_c() -> None:
    frames, sleeps, out = iter(["one\n", "two\n", "three\n"]), [], io.StringIO()
    code = watch.run(lambda: next(frames), interval_s=1.5, out=out, sleep=_stop_after(3, sleeps), clock=lambda: 0)
    assert code == 0 and sleeps == [1.5, 1.5, 1.5]
    text = out.getvalue()
    assert [line for line in text.splitlines() if line in ("one", "two", "three")] == ["one", "two", "three"]


def test_watch_off_a_terminal_separates_frames_and_never_clears() -> None:
    out = io.StringIO()
    watch.run(lambda: "frame", out=out, sleep=_stop_after(3, []), clock=lambda: 0)
    text = out.getvalue()
    assert watch.CLEAR not in text and text.count(watch.SEPARATOR) == 2 and not text.startswith(watch.SEPARATOR)


def test_watch_on_a_terminal_clears_the_screen_before_each_frame() -> None:
    out = _Tty()
    watch.run(lambda: "frame", out=out, sleep=_stop_after(2, []), clock=lambda: 0)
    text = out.getvalue()
    assert text.startswith(watch.CLEAR) and text.count(watch.CLEAR) == 2 and watch.SEPARATOR not in text


def test_sigterm_ends_the_watch_with_status_0_and_the_handler_is_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    code = watch.run(lambda: "x", out=io.StringIO(), sleep=lambda s: os.kill(os.getpid(), signal.SIGTERM),
                     clock=lambda: 0)
    assert code == 0 and signal.getsignal(signal.SIGTERM) is before


SNAP = proto.Snapshot(environment="lab", prefix="mlab", state_dir="/state", pods=(
    proto.Pod(name="nsp-t", kind="nsp", node="node-1", trench="t", netns="mlab-pod-nsp-t", state="Running"),))


def test_status_watch_renders_with_the_plain_status_function_every_frame(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    answers = iter([SNAP, CliError("environment 'lab' is not up (run: meridio up)"), SNAP])

    def fake_call(args, request):  # type: ignore[no-untyped-def]
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer
    rendered: list[proto.Snapshot] = []
    real_render = get.render_status
    monkeypatch.setattr(get, "call", fake_call)
    monkeypatch.setattr(get, "render_status", lambda snap: rendered.append(snap) or real_render(snap))
    sleeps: list[float] = []
    monkeypatch.setattr(watch.time, "sleep", _stop_after(3, sleeps))
    assert climain.main(["status", "--watch", "--interval", "0.5", "--env", "lab"]) == 0
    out = capsys.readouterr().out
    assert rendered == [SNAP, SNAP] and sleeps == [0.5] * 3
    assert out.count(real_render(SNAP).rstrip("\n")) == 2 and "meridio: environment 'lab' is not up" in out


def test_plain_status_prints_what_render_status_returns(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(get, "call", lambda args, request: SNAP)
    assert climain.main(["status"]) == 0
    assert capsys.readouterr().out == get.render_status(SNAP)


@pytest.mark.parametrize("interval", ["0", "-1", "soon"], ids=["zero", "negative", "not-a-number"])
def test_status_watch_refuses_an_interval_that_is_not_a_positive_number(capsys, interval) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit):
        climain.main(["status", "--watch", "--interval", interval])
    assert "not a positive number of seconds" in capsys.readouterr().err
