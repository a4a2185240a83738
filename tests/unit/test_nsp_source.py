"""The file configuration source: change detection, invalid files, missing files.

Real files in tmp dirs. The parser is a small JSON stand-in (named ``fake_parse``) so these tests pin
the source's own rules; the ConfigMap codec is exercised end to end in tests/integration/test_nsp.py.
"""
from __future__ import annotations

import asyncio
import json
import os
import pathlib

import pytest

from meridio.api import model as m
from meridio.nsp import source
from tests.unit.test_nsp_store import ListLog


def fake_parse(text: str, name: str) -> m.Configuration:
    """A stand-in parser: ``{"trench": "<name>"}`` → Configuration(trench); anything else raises."""
    data = json.loads(text)
    if set(data) != {"trench"}:
        raise ValueError(f"{name}: unknown keys {sorted(set(data) - {'trench'})}")
    return m.Configuration(trench=m.Trench(data["trench"]))


def write(path: pathlib.Path, trench: str | None = None, raw: str | None = None) -> None:
    path.write_text(raw if raw is not None else json.dumps({"trench": trench}))


def replace_atomically(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
def log() -> ListLog:
    return ListLog()


def make(path: pathlib.Path, log: ListLog) -> source.FileSource:
    return source.FileSource(str(path), parse=fake_parse, log=log)


def test_a_valid_file_is_loaded_once_and_an_unchanged_file_is_not_reloaded(tmp_path: pathlib.Path, log: ListLog) -> None:
    path = tmp_path / "config.yaml"
    write(path, "trench-a")
    src = make(path, log)
    assert src.poll() == m.Configuration(trench=m.Trench("trench-a"))
    os.utime(path)  # a touch changes nothing
    assert src.poll() is None
    assert [line[0] for line in log.lines] == ["configLoaded"]


def test_an_in_place_rewrite_is_detected(tmp_path: pathlib.Path, log: ListLog) -> None:
    path = tmp_path / "config.yaml"
    write(path, "trench-a")
    src = make(path, log)
    src.poll()
    write(path, "trench-b")  # same size, possibly the same mtime tick
    assert src.poll() == m.Configuration(trench=m.Trench("trench-b"))


def test_an_atomic_rename_replace_is_detected(tmp_path: pathlib.Path, log: ListLog) -> None:
    path = tmp_path / "config.yaml"
    write(path, "trench-a")
    src = make(path, log)
    src.poll()
    replace_atomically(path, json.dumps({"trench": "trench-c"}))
    assert src.poll() == m.Configuration(trench=m.Trench("trench-c"))


def test_an_invalid_file_keeps_the_last_good_configuration_and_logs_one_line(tmp_path: pathlib.Path,
                                                                              log: ListLog) -> None:
    path = tmp_path / "config.yaml"
    write(path, "trench-a")
    src = make(path, log)
    src.poll()
    write(path, raw='{"trench": "x", "bogus": 1}')
    assert src.poll() is None
    assert src.poll() is None  # not re-logged while the content stays the same
    assert log.lines[1:] == [("configInvalid", {"file": str(path), "error": f"{path}: unknown keys ['bogus']",
                                                "reason": "keepingLastGoodConfiguration"})]
    write(path, "trench-d")
    assert src.poll() == m.Configuration(trench=m.Trench("trench-d"))


def test_a_missing_file_at_start_serves_nothing_new_and_is_picked_up_when_it_appears(tmp_path: pathlib.Path,
                                                                                     log: ListLog) -> None:
    path = tmp_path / "config.yaml"
    src = make(path, log)
    assert src.poll() is None
    assert src.poll() is None
    assert log.lines == [("configFileMissing", {"file": str(path), "reason": "servingEmptyConfiguration"})]
    write(path, "trench-a")
    assert src.poll() == m.Configuration(trench=m.Trench("trench-a"))


def test_a_deleted_file_keeps_the_configuration_and_the_same_content_reappearing_is_reloaded(
        tmp_path: pathlib.Path, log: ListLog) -> None:
    path = tmp_path / "config.yaml"
    write(path, "trench-a")
    src = make(path, log)
    src.poll()
    path.unlink()
    assert src.poll() is None
    assert log.lines[-1] == ("configFileMissing", {"file": str(path), "reason": "keepingLastGoodConfiguration"})
    write(path, "trench-a")
    assert src.poll() == m.Configuration(trench=m.Trench("trench-a"))


def test_an_unreadable_path_is_logged_once_as_invalid(tmp_path: pathlib.Path, log: ListLog) -> None:
    path = tmp_path / "config.yaml"
    path.mkdir()
    src = make(path, log)
    assert src.poll() is None and src.poll() is None
    assert [(msg, f["reason"]) for msg, f in log.lines] == [("configInvalid", "servingEmptyConfiguration")]
    assert "cannot read" in str(log.lines[0][1]["error"])


async def test_run_applies_each_new_configuration(tmp_path: pathlib.Path, log: ListLog) -> None:
    path = tmp_path / "config.yaml"
    write(path, "trench-a")
    src = source.FileSource(str(path), parse=fake_parse, interval=0.01, log=log)
    seen: list[m.Configuration] = []
    task = asyncio.ensure_future(src.run(seen.append))
    try:
        await asyncio.sleep(0.05)
        replace_atomically(path, json.dumps({"trench": "trench-b"}))
        for _ in range(100):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert [c.trench for c in seen] == [m.Trench("trench-a"), m.Trench("trench-b")]


# --- with the real ConfigMap reader: what a cut-off or half-written file does ----------------------

def three_streams() -> str:
    """A whole ConfigMap manifest, as the local runtime writes it, with three streams."""
    from meridio.api import yamlio
    item = "- {{name: stream-{0}, conduit: conduit-a-1, max-targets: 100}}\n"
    data = {"trench": "name: trench-a\n",
            "conduits": "items:\n- {name: conduit-a-1, trench: trench-a}\n",
            "streams": "items:\n" + "".join(item.format(n) for n in ("1", "2", "3")),
            "flows": "items: []\n", "vips": "items: []\n", "attractors": "items: []\n", "gateways": "items: []\n"}
    return yamlio.dump({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "meridio-configuration-trench-a"}, "data": data})


def real(path: pathlib.Path, log: ListLog, trench: str = "trench-a") -> source.FileSource:
    return source.FileSource(str(path), parse=source.parser_for(trench), log=log)


@pytest.mark.parametrize("cut", ["", "apiVersion: v1\n", "half-of-streams", "half-line"],
                         ids=["emptied", "first-line-only", "half-written-3-streams-become-1", "cut-mid-line"])
def test_a_truncated_file_is_rejected_and_the_last_good_configuration_stays(
        tmp_path: pathlib.Path, log: ListLog, cut: str) -> None:
    text = three_streams()
    if cut == "half-of-streams":
        cut = text[:text.index("stream-2")]  # the writer had written the first stream so far
    elif cut == "half-line":
        cut = text[:text.index("conduit-a-1, max-targets") + len("condu")]
    path = tmp_path / "configmap.yaml"
    path.write_text(text)
    src = real(path, log)
    good = src.poll()
    assert good is not None and len(good.streams) == 3
    path.write_text(cut)  # an in-place write caught half-way (or a file emptied by a failed edit)
    assert src.poll() is None
    assert src.loads == {source.LoadResult.APPLIED: 1, source.LoadResult.REJECTED: 1}
    assert log.lines[-1][0] == "configInvalid" and log.lines[-1][1]["reason"] == "keepingLastGoodConfiguration"
    path.write_text(text)  # the writer finished: the same configuration again
    assert src.poll() == good


def test_a_file_of_another_trench_is_rejected_by_an_nsp_that_knows_its_trench(tmp_path: pathlib.Path,
                                                                            log: ListLog) -> None:
    path = tmp_path / "configmap.yaml"
    path.write_text(three_streams())
    assert real(path, log, trench="trench-b").poll() is None
    assert 'this reader serves trench "trench-b"' in str(log.lines[-1][1]["error"])
    assert real(path, log, trench="").poll() is not None  # '' = any trench
