"""The import graph is the architecture: the contracts of :mod:`tests.unit.architecture` hold for
``src/meridio``, and the checker finds each kind of violation when one is planted."""
from __future__ import annotations

import pathlib
import textwrap

import pytest

from tests.unit import architecture

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "meridio"


def test_the_product_keeps_every_import_contract() -> None:
    assert [str(v) for v in architecture.check(SRC)] == []


def test_every_top_level_package_has_a_layer() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(architecture.LAYERS), packages - set(architecture.LAYERS)


def _tree(tmp_path: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    root = tmp_path / "meridio"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            (root / parent / "__init__.py").touch()
        path.write_text(textwrap.dedent(text))
    return root


@pytest.mark.parametrize(("rel", "text", "rule"), [
    ("tapa/linkport.py", "from meridio.proxy import linkclient\n",
     "component tapa imports component proxy (meridio.proxy.linkclient): components talk over api/"),
    ("kernel/bird.py", "from meridio.frontend import birdc\n",
     "kernel imports the higher layer frontend (meridio.frontend.birdc)"),
    ("api/client.py", "import meridio.cli.main\n", "api imports the higher layer cli (meridio.cli.main)"),
    ("bird/conf.py", "from meridio.kernel.netns import run\n",
     "bird imports the higher layer kernel (meridio.kernel.netns.run)"),
    ("cli/up.py", "def f():\n    from meridio.cli import common\n",
     "imports meridio.cli.common inside a function: imports of meridio modules are at module level"),
    ("runtime/local/topology.py", "import subprocess\n",
     "imports subprocess: only kernel/ and the supervisor start processes"),
    ("runtime/local/readiness.py", "import asyncio\nasync def f():\n    await asyncio.create_subprocess_exec('ip')\n",
     "asyncio.create_subprocess_exec: only kernel/ and the supervisor start processes"),
    ("cli/x.py", "import os\nos.system('ip link')\n", "os.system: only kernel/ and the supervisor start processes"),
    ("proxy/dataplane.py", "from pyroute2 import IPRoute\n", "imports pyroute2: only kernel/ touches the host"),
    ("frontend/service.py", "from . import birdconf\nfrom ..proxy import names\n",
     "component frontend imports component proxy (meridio.proxy.names): components talk over api/"),
])
def test_a_planted_violation_is_found(tmp_path: pathlib.Path, rel: str, text: str, rule: str) -> None:
    found = architecture.check(_tree(tmp_path, {rel: text}))
    assert [v.rule for v in found] == [rule]
    assert found[0].path == f"src/meridio/{rel}"


def test_what_the_contracts_allow_is_not_reported(tmp_path: pathlib.Path) -> None:
    root = _tree(tmp_path, {
        "kernel/netns.py": "import subprocess\nimport ctypes\nfrom meridio.bird import replies\n",
        "runtime/local/supervisor.py": "import asyncio\nasync def f():\n    await asyncio.create_subprocess_exec('x')\n",
        "cli/main.py": "from meridio.runtime.local import client\nfrom meridio.api import resources\n",
        "tapa/linkport.py": "from meridio.api import linkclient\nfrom meridio.tapa import ports\nfrom . import refs\n",
        "api/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from meridio.common import log\n",
        "api/pb/gen.py": "import subprocess\n",  # generated code is not checked
    })
    assert architecture.check(root) == []
