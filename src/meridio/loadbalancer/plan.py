"""Diff the installed content of ``table inet meridio-lb`` against the desired one: one nft batch.

:class:`Installed` is what the kernel holds, read back from ``nft -j list table`` (:func:`installed_from_json`)
or remembered after a successful apply (:meth:`Installed.of`). :func:`plan` returns the text commands
that turn it into the desired :class:`~nftobjects.Ruleset`; the caller applies them as ONE transaction.
Only what differs is touched: unchanged chains are not rewritten, sets and maps get element deltas, a
stream map gets ``delete``+``add`` for exactly the buckets that changed owner. Pure: no I/O.

Command order inside the batch (nftables checks references as it goes):
  1. flush chains that change or go (drops their references to maps, sets, counters and chains);
  2. delete elements that go or change value (drops vmap references to chains);
  3. delete sets/maps that go or are re-declared, then chains, then counters;
  4. declare new counters, chains, sets and maps (typeof maps only work in text; in nft 1.0.6 a vmap
     element can only name a chain declared *before* its map in the batch);
  5. add elements; 6. add the rules of new and changed chains.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any, Iterable, Iterator, Mapping, Sequence

from meridio.loadbalancer.nftobjects import (FAMILY, TABLE, BucketMapObj, ChainObj, Hook, Ruleset,
                                             canonical_interval)

__all__ = ["InstalledChain", "Installed", "installed_from_json", "plan", "stream_params", "CHUNK"]

CHUNK = 8192
"""Elements per ``add element`` command (all chunks still go in one batch)."""

_T = f"{FAMILY} {TABLE}"


@dataclasses.dataclass(frozen=True)
class InstalledChain:
    hook: Hook | None
    fingerprint: str | None
    """The chain fingerprint its rules carry, or ``None`` if the rules are not exactly ours."""


@dataclasses.dataclass(frozen=True)
class Installed:
    table: bool = False
    counters: frozenset[str] = frozenset()
    sets: Mapping[str, tuple[str, frozenset[str]]] = dataclasses.field(default_factory=dict)
    maps: Mapping[str, tuple[str, Mapping[str, str]]] = dataclasses.field(default_factory=dict)
    buckets: Mapping[str, tuple[str, tuple[int, ...]]] = dataclasses.field(default_factory=dict)
    chains: Mapping[str, InstalledChain] = dataclasses.field(default_factory=dict)

    @staticmethod
    def of(ruleset: Ruleset) -> "Installed":
        """What the kernel holds once ``ruleset`` was applied successfully."""
        return Installed(
            table=True, counters=ruleset.counters,
            sets={n: (s.comment, s.elements) for n, s in ruleset.sets.items()},
            maps={n: (m.comment, dict(m.elements)) for n, m in ruleset.maps.items()},
            buckets={n: (b.comment, b.marks) for n, b in ruleset.buckets.items()},
            chains={n: InstalledChain(c.hook, c.fingerprint) for n, c in ruleset.chains.items()},
        )


_PARAM_RE = re.compile(r"(offset|max-targets|m)=(\d+)")


def stream_params(comment: str) -> dict[str, int]:
    """``offset``, ``max-targets`` and ``m`` from a stream map comment (empty if it is not one)."""
    return {k: int(v) for k, v in _PARAM_RE.findall(comment)}


# --- reading the kernel's JSON -----------------------------------------------------------------

def _interval(elem: Any) -> str:
    if isinstance(elem, dict) and "prefix" in elem:
        return str(ipaddress.ip_network(f"{elem['prefix']['addr']}/{elem['prefix']['len']}"))
    if isinstance(elem, dict) and "range" in elem:
        first, last = (ipaddress.ip_address(a) for a in elem["range"])
        return canonical_interval(first, last)
    if isinstance(elem, dict) and "elem" in elem:
        return _interval(elem["elem"]["val"])
    return str(ipaddress.ip_network(str(elem)))


def _key(elem: Any) -> str:
    if isinstance(elem, int):
        return str(elem)
    return _interval(elem)


def _value(value: Any) -> str:
    if isinstance(value, dict):
        for verdict in ("goto", "jump"):
            if verdict in value:
                return f"{verdict} {value[verdict]['target']}"
        raise ValueError(f"unexpected map value {value!r}")
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def _hook(chain: Mapping[str, Any]) -> Hook | None:
    if "hook" not in chain:
        return None
    return Hook(chain["hook"], int(chain["prio"]), chain.get("type", "filter"), chain.get("policy", "accept"))


def _chain_fingerprint(comments: Sequence[str | None]) -> str | None:
    if not comments or comments[0] is None or ":" not in comments[0]:
        return None
    fp = comments[0].split(":", 1)[0]
    return fp if list(comments) == [f"{fp}:{i}" for i in range(len(comments))] else None


def installed_from_json(objects: Iterable[Mapping[str, Any]]) -> Installed:
    """Parse ``nft -j list table inet meridio-lb`` (objects without metainfo) into :class:`Installed`."""
    table = False
    counters: set[str] = set()
    sets: dict[str, tuple[str, frozenset[str]]] = {}
    maps: dict[str, tuple[str, dict[str, str]]] = {}
    buckets: dict[str, tuple[str, tuple[int, ...]]] = {}
    hooks: dict[str, Hook | None] = {}
    comments: dict[str, list[str | None]] = {}
    for obj in objects:
        kind, body = next(iter(obj.items()))
        if kind == "table":
            table = True
        elif kind == "counter":
            counters.add(body["name"])
        elif kind == "set":
            sets[body["name"]] = (body.get("comment", ""), frozenset(_interval(e) for e in body.get("elem", [])))
        elif kind == "map" and body.get("map") == "mark" and body.get("type") == "integer":
            buckets[body["name"]] = _buckets(body)
        elif kind == "map":
            maps[body["name"]] = (body.get("comment", ""),
                                  {_key(k): _value(v) for k, v in body.get("elem", [])})
        elif kind == "chain":
            hooks[body["name"]] = _hook(body)
            comments.setdefault(body["name"], [])
        elif kind == "rule":
            comments.setdefault(body["chain"], []).append(body.get("comment"))
    chains = {name: InstalledChain(hooks.get(name), _chain_fingerprint(comments.get(name, [])))
              for name in hooks}
    return Installed(table, frozenset(counters), sets, maps, buckets, chains)


def _buckets(body: Mapping[str, Any]) -> tuple[str, tuple[int, ...]]:
    comment = body.get("comment", "")
    elements = body.get("elem", [])
    size = stream_params(comment).get("m") or (max((k for k, _ in elements), default=-1) + 1)
    marks = [0] * size
    for key, mark in elements:
        if 0 <= key < size:
            marks[key] = int(mark)
    return comment, tuple(marks) if any(marks) else ()


# --- the plan ----------------------------------------------------------------------------------

def _chunks(items: Sequence[str]) -> Iterator[str]:
    for i in range(0, len(items), CHUNK):
        yield ", ".join(items[i:i + CHUNK])


def _elements(verb: str, kind: str, name: str, items: Sequence[str]) -> list[str]:
    return [f"{verb} element {_T} {name} {{ {chunk} }}" for chunk in _chunks(items)]


def _rule_lines(chain: ChainObj) -> list[str]:
    fp = chain.fingerprint
    return [f'add rule {_T} {chain.name} {rule} comment "{fp}:{i}"' for i, rule in enumerate(chain.rules)]


def _changed_buckets(old: tuple[int, ...], new: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """(buckets to delete, buckets to add) between two mark tables of one map (empty = no elements)."""
    size = max(len(old), len(new))
    old = old or (0,) * size
    new = new or (0,) * size
    delete = [b for b in range(size) if old[b] and old[b] != new[b]]
    add = [b for b in range(size) if new[b] and old[b] != new[b]]
    return delete, add


def plan(installed: Installed, desired: Ruleset) -> list[str]:
    """The commands (one batch) that make ``installed`` equal to ``desired``; ``[]`` if nothing differs."""
    inst = installed
    flush: list[str] = []
    drop_elements: list[str] = []
    delete: list[str] = []
    declare: list[str] = []
    add_elements: list[str] = []
    rules: list[str] = []
    if not inst.table:
        declare.append(f"add table {_T}")

    redeclared_sets = {n for n, s in desired.sets.items() if n in inst.sets and inst.sets[n][0] != s.comment}
    redeclared_maps = {n for n, m in desired.maps.items() if n in inst.maps and inst.maps[n][0] != m.comment}
    redeclared_buckets = {n for n, b in desired.buckets.items()
                          if n in inst.buckets and inst.buckets[n][0] != b.comment}
    redeclared_chains = {n for n, c in desired.chains.items() if n in inst.chains and inst.chains[n].hook != c.hook}
    changed_chains = {n for n, c in desired.chains.items()
                      if n not in inst.chains or n in redeclared_chains or inst.chains[n].fingerprint != c.fingerprint}

    for name in sorted(inst.chains):
        if name not in desired.chains or name in changed_chains:
            flush.append(f"flush chain {_T} {name}")

    for name, s in sorted(desired.sets.items()):
        old = inst.sets[name][1] if name in inst.sets and name not in redeclared_sets else frozenset()
        drop_elements += _elements("delete", "set", name, sorted(old - s.elements))
        add_elements += _elements("add", "set", name, sorted(s.elements - old))
    for name, m in sorted(desired.maps.items()):
        old_map = inst.maps[name][1] if name in inst.maps and name not in redeclared_maps else {}
        gone = sorted(k for k, v in old_map.items() if m.elements.get(k) != v)
        drop_elements += _elements("delete", "map", name, gone)
        add_elements += _elements("add", "map", name, [f"{k} : {v}" for k, v in sorted(m.elements.items())
                                                       if old_map.get(k) != v])
    for name, b in sorted(desired.buckets.items()):
        old_marks = inst.buckets[name][1] if name in inst.buckets and name not in redeclared_buckets else ()
        if old_marks == b.marks and name in inst.buckets and name not in redeclared_buckets:
            continue  # one C-speed comparison instead of a Python loop over up to 999983 buckets
        gone_b, new_b = _changed_buckets(old_marks, b.marks)
        drop_elements += _elements("delete", "map", name, [str(x) for x in gone_b])
        add_elements += _elements("add", "map", name, [f"{x} : {b.marks[x]}" for x in new_b])

    for name in sorted(inst.sets):
        if name not in desired.sets or name in redeclared_sets:
            delete.append(f"delete set {_T} {name}")
    for name in sorted(inst.maps):
        if name not in desired.maps or name in redeclared_maps:
            delete.append(f"delete map {_T} {name}")
    for name in sorted(inst.buckets):
        if name not in desired.buckets or name in redeclared_buckets:
            delete.append(f"delete map {_T} {name}")
    for name in sorted(inst.chains):
        if name not in desired.chains or name in redeclared_chains:
            delete.append(f"delete chain {_T} {name}")
    for name in sorted(inst.counters - desired.counters):
        delete.append(f"delete counter {_T} {name}")

    for name in sorted(desired.counters - inst.counters):
        declare.append(f"add counter {_T} {name}")
    for name, c in sorted(desired.chains.items()):
        if name not in inst.chains or name in redeclared_chains:
            declare.append(f"add chain {_T} {name}" + (f" {{ {c.hook.nft()} }}" if c.hook else ""))
    for name, s in sorted(desired.sets.items()):
        if name not in inst.sets or name in redeclared_sets:
            declare.append(f'add set {_T} {name} {{ {s.decl} comment "{s.comment}"; }}')
    for name, m in sorted(desired.maps.items()):
        if name not in inst.maps or name in redeclared_maps:
            declare.append(f'add map {_T} {name} {{ {m.decl} comment "{m.comment}"; }}')
    for name, b in sorted(desired.buckets.items()):
        if name not in inst.buckets or name in redeclared_buckets:
            declare.append(f'add map {_T} {name} {{ {b.decl} comment "{b.comment}"; }}')

    for name in sorted(changed_chains):
        rules += _rule_lines(desired.chains[name])
    return flush + drop_elements + delete + declare + add_elements + rules
