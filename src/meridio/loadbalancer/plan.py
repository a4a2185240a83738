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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from meridio.loadbalancer.nftobjects import FAMILY, TABLE, ChainObj, Hook, Ruleset, canonical_interval

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
    def of(ruleset: Ruleset) -> Installed:
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


def _split(desired: Mapping[str, str], installed: Mapping[str, str]) -> tuple[set[str], set[str], set[str]]:
    """Names by declaration (comment/hook text): (kept as is, to declare, to delete). Re-declared = both."""
    kept = {n for n, decl in desired.items() if n in installed and installed[n] == decl}
    return kept, set(desired) - kept, set(installed) - kept


def _set_and_map_deltas(inst: Installed, desired: Ruleset, kept: dict[str, set[str]]) -> tuple[list[str], list[str]]:
    """(element deletions, element additions) for every set and map; new maps get all their elements."""
    drop: list[str] = []
    add: list[str] = []
    for name, s in sorted(desired.sets.items()):
        old = inst.sets[name][1] if name in kept["sets"] else frozenset()
        drop += _elements("delete", "set", name, sorted(old - s.elements))
        add += _elements("add", "set", name, sorted(s.elements - old))
    for name, m in sorted(desired.maps.items()):
        old_map = inst.maps[name][1] if name in kept["maps"] else {}
        drop += _elements("delete", "map", name, sorted(k for k, v in old_map.items() if m.elements.get(k) != v))
        add += _elements("add", "map", name, [f"{k} : {v}" for k, v in sorted(m.elements.items())
                                              if old_map.get(k) != v])
    for name, b in sorted(desired.buckets.items()):
        old_marks = inst.buckets[name][1] if name in kept["buckets"] else ()
        if name in kept["buckets"] and old_marks == b.marks:
            continue  # one C-speed comparison instead of a Python loop over up to 999983 buckets
        gone, new = _changed_buckets(old_marks, b.marks)
        drop += _elements("delete", "map", name, [str(x) for x in gone])
        add += _elements("add", "map", name, [f"{x} : {b.marks[x]}" for x in new])
    return drop, add


def _declarations(desired: Ruleset, new: dict[str, set[str]], counters: frozenset[str]) -> list[str]:
    out = [f"add counter {_T} {name}" for name in sorted(counters)]
    out += [f"add chain {_T} {n}" + (f" {{ {_hook_text(desired.chains[n].hook)} }}" if desired.chains[n].hook else "")
            for n in sorted(new["chains"])]
    out += [f'add set {_T} {n} {{ {desired.sets[n].decl} comment "{desired.sets[n].comment}"; }}'
            for n in sorted(new["sets"])]
    out += [f'add map {_T} {n} {{ {desired.maps[n].decl} comment "{desired.maps[n].comment}"; }}'
            for n in sorted(new["maps"])]
    out += [f'add map {_T} {n} {{ {desired.buckets[n].decl} comment "{desired.buckets[n].comment}"; }}'
            for n in sorted(new["buckets"])]
    return out


def _hook_text(hook: Hook | None) -> str:
    """A chain's declaration: its hook line, or '' for a regular chain."""
    return hook.nft() if hook else ""


def plan(installed: Installed, desired: Ruleset) -> list[str]:
    """The commands (one batch) that make ``installed`` equal to ``desired``; ``[]`` if nothing differs."""
    inst = installed
    kept: dict[str, set[str]] = {}
    new: dict[str, set[str]] = {}
    gone: dict[str, set[str]] = {}
    for kind, want, have in (
            ("sets", {n: s.comment for n, s in desired.sets.items()}, {n: c for n, (c, _) in inst.sets.items()}),
            ("maps", {n: m.comment for n, m in desired.maps.items()}, {n: c for n, (c, _) in inst.maps.items()}),
            ("buckets", {n: b.comment for n, b in desired.buckets.items()},
             {n: c for n, (c, _) in inst.buckets.items()}),
            ("chains", {n: _hook_text(c.hook) for n, c in desired.chains.items()},
             {n: _hook_text(c.hook) for n, c in inst.chains.items()})):
        kept[kind], new[kind], gone[kind] = _split(want, have)
    changed_chains = new["chains"] | {n for n in kept["chains"]
                                      if inst.chains[n].fingerprint != desired.chains[n].fingerprint}
    flush = [f"flush chain {_T} {n}" for n in sorted(inst.chains) if n in gone["chains"] or n in changed_chains]
    drop_elements, add_elements = _set_and_map_deltas(inst, desired, kept)
    delete = ([f"delete set {_T} {n}" for n in sorted(gone["sets"])]
              + [f"delete map {_T} {n}" for n in sorted(gone["maps"] | gone["buckets"])]
              + [f"delete chain {_T} {n}" for n in sorted(gone["chains"])]
              + [f"delete counter {_T} {n}" for n in sorted(inst.counters - desired.counters)])
    declare = ([] if inst.table else [f"add table {_T}"]) + _declarations(
        desired, new, desired.counters - inst.counters)
    rules = [line for n in sorted(changed_chains) for line in _rule_lines(desired.chains[n])]
    return flush + drop_elements + delete + declare + add_elements + rules
