"""The runtime commands' bad-input answers: one clear sentence, exit 1, nothing changed, no traceback.

No environment runs here: ``MERIDIO_STATE_DIR`` points at an empty temporary directory.
"""
from __future__ import annotations

import pathlib

import pytest

from meridio.cli import main as climain
from meridio.runtime.local import client
from meridio.runtime.local import environment as envmod
from meridio.runtime.local.layout import StateLayout


@pytest.fixture(autouse=True)
def state(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.setenv("MERIDIO_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = climain.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv", [("get", "pods"), ("status",), ("apply", "-f", "-"), ("scale", "deployment/x",
                                  "--replicas", "1"), ("delete", "vip", "v")],
                         ids=["get", "status", "apply", "scale", "delete"])
def test_commands_against_an_environment_that_is_not_up_say_so(capsys, monkeypatch, argv) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(""))
    code, _, err = _run(capsys, *argv)
    assert code == 1 and err.strip() == "meridio: environment 'default' is not up (run: meridio up)"


def test_apply_reports_schema_problems_before_asking_any_daemon(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: meridio.nordix.org/v1\nkind: Flow\nmetadata: {name: f, labels: {trench: t}}\n"
                   "spec: {vips: [v], protocols: [tcp], priority: x}\n")
    code, _, err = _run(capsys, "apply", "-f", str(bad))
    assert code == 1 and "Flow/f: spec.priority" in err and "Traceback" not in err


def test_apply_of_a_missing_file_names_it(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = _run(capsys, "apply", "-f", str(tmp_path / "nope.yaml"))
    assert code == 1 and f"{tmp_path / 'nope.yaml'}: No such file or directory" in err


@pytest.mark.parametrize(("argv", "message"), [
    (("scale", "statefulset/x", "--replicas", "1"), "scale: expected deployment/NAME"),
    (("delete",), "delete needs -f FILE or KIND NAME"),
    (("delete", "pizza", "x"), 'unknown kind "pizza"'),
    (("get", "pizzas"), 'unknown kind "pizzas"'),
    (("traffic", "--trench", "t", "--vip", "not-an-ip", "--port", "1"), "--vip: 'not-an-ip' is not an IP address"),
    (("logs", "some-pod"), "no logs for pod 'some-pod' in environment 'default'"),
], ids=["scale-kind", "delete-nothing", "delete-kind", "get-kind", "traffic-vip", "logs-pod"])
def test_bad_arguments_get_one_sentence(capsys, argv, message) -> None:  # type: ignore[no-untyped-def]
    code, _, err = _run(capsys, *argv)
    assert code == 1 and message in err and "Traceback" not in err


def test_up_with_an_invalid_environment_file_names_the_field(capsys, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(client, "preflight", lambda: None)
    env = tmp_path / "env.yaml"
    env.write_text("name: lab\nnodes: node-1\n")
    code, _, err = _run(capsys, "up", "-f", str(env))
    assert code == 1 and f"{env}: nodes: must be a list" in err


def test_up_without_root_is_one_sentence(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    code, _, err = _run(capsys, "up")
    assert code == 1 and err.strip() == ("meridio: the local runtime needs root (network namespaces, nftables, BIRD): "
                                         "run it with sudo")


def test_up_names_a_missing_system_command(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr("shutil.which", lambda cmd: None if cmd == "bird" else f"/usr/bin/{cmd}")
    code, _, err = _run(capsys, "up")
    assert code == 1 and "missing system commands: bird (Debian package bird2)" in err


def test_down_of_an_unknown_environment_has_nothing_to_do(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("os.geteuid", lambda: 0)
    code, out, _ = _run(capsys, "down", "--env", "never-made")
    assert code == 0 and "nothing to tear down" in out


def test_target_pod_of_an_environment_that_is_not_up_is_one_sentence(capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = _run(capsys, "target", "watch", "--pod", "target-a-0")
    assert code == 1 and "pod 'target-a-0' of environment 'default' has no TAPA socket" in err


def test_a_daemon_refusing_its_corrupt_store_exits_and_up_names_the_file_and_the_way_out(
        tmp_path: pathlib.Path) -> None:
    layout = StateLayout(tmp_path / "env")
    client.save_environment(layout, envmod.DEFAULT_PATH.read_text(), envmod.DEFAULT_PATH.parent)
    layout.store.write_bytes(b"")
    with pytest.raises(client.DaemonUnavailable) as err:
        client.start_daemon(layout, timeout=30)
    message = str(err.value)
    assert "exited at start (code 1)" in message and f"runtime store {layout.store} is empty (0 bytes)" in message
    assert "restore a backup of it, or move it aside" in message
    assert layout.store.read_bytes() == b""
    assert client.daemon_pid(layout) is None
