"""The import contracts of ``src/meridio``, as a checker that reads the source (no import, no execution).

The layers, highest first; a module may import its own package and any lower layer, never a higher
one, and the components (one layer) never import each other — they talk over the clients in ``api``::

    cli > runtime > components (nsp ipam loadbalancer frontend proxy tapa target) > kernel > bird > api > common

Besides the layers:
- every import of a ``meridio`` module is at module level (none hidden in a function to dodge a cycle;
  ``if TYPE_CHECKING:`` blocks count as module level);
- only ``kernel`` and the runtime's supervisor start processes (``subprocess``, ``asyncio``'s
  ``create_subprocess_*``, ``os.system``/``popen``/``exec*``/``spawn*``/``fork``);
- only ``kernel`` imports the host's libraries (``pyroute2``, ``ctypes``).

:func:`check` returns one line per violation, ``path:line: rule``; the test asserts there are none and
that the checker does find a violation planted in a synthetic tree.
"""
from __future__ import annotations

import ast
import dataclasses
import pathlib

__all__ = ["COMPONENTS", "LAYERS", "Violation", "check", "package_of"]

COMPONENTS = frozenset({"nsp", "ipam", "loadbalancer", "frontend", "proxy", "tapa", "target"})
LAYERS: dict[str, int] = {"common": 0, "api": 1, "bird": 2, "kernel": 3, **dict.fromkeys(COMPONENTS, 4),
                          "runtime": 5, "cli": 6}
"""Layer of each top-level package of ``meridio`` (higher imports lower)."""
PROCESS_STARTERS = ("kernel/", "runtime/local/supervisor.py")
HOST_LIBRARIES = frozenset({"pyroute2", "ctypes"})
_OS_SPAWN = frozenset({"system", "popen", "fork", "forkpty", "execv", "execve", "execvp", "execvpe", "execl",
                       "execle", "execlp", "execlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl",
                       "spawnle", "spawnlp", "spawnlpe", "posix_spawn", "posix_spawnp"})
_EXCLUDED = ("api/pb/",)
"""Generated code (the gRPC stubs): not checked as importers."""


@dataclasses.dataclass(frozen=True)
class Violation:
    path: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


def package_of(module: str) -> str | None:
    """The top-level package of a ``meridio`` module (``meridio.api.pb.x`` → ``api``); None for others."""
    parts = module.split(".")
    if parts[0] != "meridio" or len(parts) < 2:
        return None
    return parts[1]


def _module_name(root: pathlib.Path, path: pathlib.Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    # ``from meridio.runtime.local import client`` names meridio.runtime.local.client (a module or a name)
    return [f"{target}.{a.name}" for a in node.names]


def _module_level(tree: ast.Module) -> set[int]:
    """ids of the import nodes at module level (also inside top-level ``if``/``try`` blocks)."""
    out: set[int] = set()
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.add(id(node))
        elif isinstance(node, (ast.If, ast.Try)):
            todo += node.body + node.orelse + getattr(node, "finalbody", [])
            for handler in getattr(node, "handlers", []):
                todo += handler.body
    return out


def _spawn_call(node: ast.AST) -> str | None:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return None
    owner, name = node.func.value, node.func.attr
    if isinstance(owner, ast.Name) and owner.id == "asyncio" and name.startswith("create_subprocess_"):
        return f"asyncio.{name}"
    if isinstance(owner, ast.Name) and owner.id == "os" and name in _OS_SPAWN:
        return f"os.{name}"
    return None


def _layer_rule(src_pkg: str, dst_pkg: str, target: str) -> str | None:
    if src_pkg == dst_pkg or dst_pkg not in LAYERS or src_pkg not in LAYERS:
        return None
    if src_pkg in COMPONENTS and dst_pkg in COMPONENTS:
        return f"component {src_pkg} imports component {dst_pkg} ({target}): components talk over api/"
    if LAYERS[dst_pkg] > LAYERS[src_pkg]:
        return f"{src_pkg} imports the higher layer {dst_pkg} ({target})"
    return None


def check(root: pathlib.Path) -> list[Violation]:
    """Every violation of the contracts in the package at ``root`` (a directory named ``meridio``)."""
    found: list[Violation] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(_EXCLUDED):
            continue
        module = _module_name(root, path)
        src_pkg = package_of(module) if "." in module else None
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        top = _module_level(tree)
        may_spawn = rel.startswith(PROCESS_STARTERS)
        here = f"src/meridio/{rel}"
        for node in ast.walk(tree):
            spawn = _spawn_call(node)
            if spawn and not may_spawn:
                found.append(Violation(here, node.lineno, f"{spawn}: only kernel/ and the supervisor start processes"))
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _imported(node, module, path.name == "__init__.py"):
                first = target.split(".")[0]
                if first == "subprocess" and not may_spawn:
                    found.append(Violation(here, node.lineno, "imports subprocess: only kernel/ and the supervisor "
                                                              "start processes"))
                if first in HOST_LIBRARIES and src_pkg != "kernel":
                    found.append(Violation(here, node.lineno, f"imports {first}: only kernel/ touches the host"))
                dst_pkg = package_of(target)
                if dst_pkg is None:
                    continue
                if id(node) not in top:
                    found.append(Violation(here, node.lineno, f"imports {target} inside a function: imports of "
                                                              f"meridio modules are at module level"))
                rule = _layer_rule(src_pkg, dst_pkg, target) if src_pkg else None
                if rule:
                    found.append(Violation(here, node.lineno, rule))
    return found
