"""``meridio validate`` and ``meridio render configmap``: output, exit status, one-line errors, no tracebacks."""
from __future__ import annotations

import io
import pathlib
import subprocess
import sys

import pytest
import yaml

from meridio.api import configmap
from meridio.cli import main as climain

E2E = pathlib.Path(__file__).resolve().parents[2] / "examples" / "e2e"
INIT_A, INIT_B, NEW_VIP = (str(E2E / f) for f in ("init-trench-a.yaml", "init-trench-b.yaml", "new-vip.yaml"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = climain.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: pathlib.Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_validate_counts_the_objects_of_valid_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "validate", "-f", INIT_A, "-f", INIT_B) == (0, "32 objects valid\n", "")


def test_validate_applies_later_files_as_updates(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "-f", INIT_A, "-f", NEW_VIP)
    assert code == 0 and out.endswith("objects valid\n")


def test_validate_prints_one_line_per_problem_and_exits_1(capsys: pytest.CaptureFixture[str],
                                                          tmp_path: pathlib.Path) -> None:
    bad = write(tmp_path, "bad.yaml", """\
apiVersion: meridio.nordix.org/v1
kind: Flow
metadata: {name: flow-a, namespace: red, labels: {trench: trench-a}}
spec: {stream: stream-a-i, vips: [vip-a-1-v4], protocols: [tcp, tcp], priority: -1}
""")
    code, out, err = run(capsys, "validate", "-f", INIT_A, "-f", bad)
    assert code == 1 and err == ""
    assert out.splitlines() == [
        'Flow/flow-a: spec.protocols: Invalid value: ["tcp", "tcp"]: duplicated protocols',
        "Flow/flow-a: spec.priority: Invalid value: -1: priority must be larger than 0"]


def test_validate_reports_schema_errors_of_all_files(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    a = write(tmp_path, "a.yaml", "apiVersion: meridio.nordix.org/v1\nkind: Trench\nmetadata: {name: t}\n"
                                  "spec: {ip-family: ipv5}\n")
    b = write(tmp_path, "b.yaml", "apiVersion: meridio.nordix.org/v1\nkind: Trench\nmetadata: {name: u\n")
    code, out, _ = run(capsys, "validate", "-f", a, "-f", b)
    assert code == 1
    assert out.splitlines() == [
        'Trench/t: spec.ip-family: Unsupported value: "ipv5": supported values: "dualstack", "ipv4", "ipv6"',
        f"{b}:4:1: invalid YAML: expected ',' or '}}', but got '<stream end>'"]


def test_validate_reads_stdin_and_directories(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "1-trench.yaml", "apiVersion: meridio.nordix.org/v1\nkind: Trench\nmetadata: {name: t}\n")
    write(tmp_path, "2-vip.yml", "apiVersion: meridio.nordix.org/v1\nkind: Vip\nmetadata: {name: v, labels: "
                                 "{trench: t}}\nspec: {address: 203.0.113.1/32}\n")
    write(tmp_path, "notes.txt", "not yaml: [")
    monkeypatch.setattr(sys, "stdin", io.StringIO("apiVersion: meridio.nordix.org/v1\nkind: Conduit\n"
                                                  "metadata: {name: c, labels: {trench: t}}\n"))
    assert run(capsys, "validate", "-f", str(tmp_path), "-f", "-") == (0, "3 objects valid\n", "")


def test_a_missing_file_is_one_line_on_stderr(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    assert run(capsys, "validate", "-f", missing) == (
        1, "", f"meridio: cannot read {missing}: No such file or directory\n")


def test_render_configmap_prints_the_manifest_the_nsp_reads(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "render", "configmap", "-f", INIT_A, "-f", NEW_VIP, "--trench", "trench-a", "-n", "red")
    assert code == 0 and err == ""
    manifest = yaml.safe_load(out)
    assert manifest["metadata"] == {"name": "meridio-configuration-trench-a", "namespace": "red"}
    cfg = configmap.loads(out)
    assert {v.name for v in cfg.attractors[0].vips} == {"vip-a-1-v4", "vip-a-1-v6", "vip-a-2-v4", "vip-a-2-v6"}


def test_render_configmap_of_invalid_files_prints_problems_and_no_manifest(
        capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    bad = write(tmp_path, "bad.yaml", "apiVersion: meridio.nordix.org/v1\nkind: Stream\nmetadata: {name: s, "
                                      "namespace: red, labels: {trench: trench-a}}\nspec: {max-targets: 0}\n")
    code, out, err = run(capsys, "render", "configmap", "-f", INIT_A, "-f", bad, "--trench", "trench-a", "-n", "red")
    assert (code, out) == (1, "")
    assert err == ("Stream/s: spec.max-targets: Invalid value: 0: must be greater than or equal to 1 and less than "
                   "or equal to 10000\n")


def test_render_configmap_of_an_unknown_trench_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "render", "configmap", "-f", INIT_A, "--trench", "trench-a") == (
        1, "", 'meridio: trench "trench-a" not found in namespace "default"\n')


def test_the_installed_command_never_prints_a_traceback(tmp_path: pathlib.Path) -> None:
    garbage = write(tmp_path, "garbage.yaml", "\x00\x01: [")
    exe = pathlib.Path(sys.executable).parent / "meridio"
    for args in (["validate", "-f", garbage], ["validate", "-f", str(tmp_path / "none.yaml")],
                 ["render", "configmap", "-f", INIT_A, "--trench", "nope"]):
        proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, args
        assert "Traceback" not in proc.stderr + proc.stdout, args
