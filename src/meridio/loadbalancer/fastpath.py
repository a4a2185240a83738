"""The eBPF side of the load balancer: owns the fast path's program, pins and maps in one namespace.

Thin adapter over :mod:`meridio.kernel.bpf` and the pure :mod:`fastmaps`. :meth:`FastPath.start`
re-opens the pins a previous run left on the private bpffs (the program may still be attached and
forwarding) or loads the object and pins it; it reads back what the maps hold, so a restarted daemon
keeps every stream, flow counter and table and rewrites only what differs. :meth:`FastPath.apply`
writes the difference between the maps and the :class:`~fastmaps.Image` of a config, in an order where
a packet never meets a reference to something not yet written:

1. targets (nexthops), then each stream: a new stream's table is written whole (both halves) into a new
   inner map before its slot is set; a changed table is written into the stream's *inactive* half, only
   the buckets that differ from what that half holds, then the stream's generation flips to it in one
   element update, so a packet sees the old table or the new one, never a mix;
2. flow counter slots (zeroed when newly taken), then the VIP entries (added/changed, then removed);
3. streams, targets and flow slots nothing refers to any more are cleared.

Then the program is attached (tc clsact ingress) on the interfaces it serves. :meth:`remove` detaches it
and removes every pin. Synchronous; called from the reconciler's worker thread only.
"""
from __future__ import annotations

import array
import dataclasses
import ipaddress
import pathlib
import socket
import struct
import time
from collections.abc import Iterable, Mapping, Sequence

from meridio.common import log as logmod
from meridio.kernel import bpf
from meridio.kernel.netlink import Netlink
from meridio.loadbalancer import fastmaps
from meridio.loadbalancer.datapath import CounterValue
from meridio.loadbalancer.ruleset import LbConfig

__all__ = ["FastPath", "FastApplyResult", "OBJECT", "MAPS", "PROGRAM"]

OBJECT = pathlib.Path(__file__).with_name("bpf") / "fastpath.bpf.o"
PROGRAM = "meridio_fastpath"
MAPS = ("vip4", "vip6", "vip4_prefixes", "vip6_prefixes", "streams", "tables", "targets", "target_stats",
        "flow_stats", "flow_names")
_VALUE_SIZES = {"vip4": fastmaps.VIP, "vip6": fastmaps.VIP, "vip4_prefixes": fastmaps.VIP,
                "vip6_prefixes": fastmaps.VIP, "streams": fastmaps.STREAM.size, "targets": fastmaps.TARGET.size,
                "target_stats": fastmaps.STATS.size, "flow_stats": fastmaps.STATS.size, "flow_names": 8}
_VIP_MAPS = ("vip4", "vip6", "vip4_prefixes", "vip6_prefixes")


@dataclasses.dataclass(frozen=True)
class FastApplyResult:
    seconds: float
    buckets_written: int
    """Table entries written (a new stream counts 2*M, a table switch only the buckets that differ)."""
    entries_written: int
    """Other map elements written or deleted."""
    attached: tuple[str, ...]


@dataclasses.dataclass
class _Stream:
    seed: int
    m: int
    gen: int
    table: bpf.Map
    halves: list[tuple[int, ...]]


def _key(slot: int) -> bytes:
    return struct.pack("<I", slot)


class FastPath:
    """The fast path of one LB namespace (``netns`` None: this process's own)."""

    def __init__(self, nl: Netlink, *, pin_dir: pathlib.Path, first_fwmark: int, interfaces: Sequence[str] = (),
                 exclude_prefix: str = "", netns: str | None = None, obj: pathlib.Path = OBJECT,
                 log: logmod.Logger = logmod.null) -> None:
        self._nl = nl
        self.pin_dir = pin_dir
        self.first_fwmark = first_fwmark
        self.interfaces = tuple(interfaces)
        """Interfaces to attach on; empty: every interface but ``lo`` and those named ``exclude_prefix*``."""
        self.exclude_prefix = exclude_prefix
        self.netns = netns
        self._obj = obj
        self._log = log
        self._loaded: bpf.LoadedObject | None = None
        self._streams: dict[int, _Stream] = {}
        self._vips: dict[str, dict[bytes, bytes]] = {}
        self._targets: dict[int, bytes] = {}
        self._flow_fps: dict[int, int] = {}
        self._stream_slots = fastmaps.Slots(fastmaps.MAX_STREAMS)
        self._flow_slots = fastmaps.Slots(fastmaps.MAX_FLOW_COUNTERS)
        self._attached: dict[str, int] = {}
        self.image: fastmaps.Image | None = None
        self.reopened = False

    # --- start ---------------------------------------------------------------------------------

    @property
    def loaded(self) -> bpf.LoadedObject:
        if self._loaded is None:
            raise bpf.BpfError(0, "the fast path is not started")
        return self._loaded

    def _map(self, name: str) -> bpf.Map:
        return self.loaded.maps[name]

    def start(self) -> None:
        """Re-open the pins (and read back the maps) or load and pin the object."""
        if not bpf.is_bpffs(self.pin_dir):
            if bpf.mount_bpffs(self.pin_dir):
                self._log.warning("fastpathBpffsMounted", path=str(self.pin_dir),
                                  reason="notMountedByRuntime")
        try:
            self._loaded = bpf.open_pinned(self.pin_dir, MAPS)
            self.reopened = self._compatible()
        except bpf.BpfError:
            self.reopened = False
        if not self.reopened:  # nothing pinned, or pins of another layout: a new program (attached on apply,
            self.close()       # replacing the old one atomically)
            self._unpin()
            self._loaded = bpf.load_object(self._obj, PROGRAM, MAPS, self.pin_dir)
            if not self._compatible():
                raise bpf.BpfError(0, f"{self._obj}: map value sizes differ from what fastmaps.py encodes "
                                      "(bpf/fastpath.bpf.c and fastmaps.py disagree)")
        self._read_back()
        self._log.info("fastpathStarted", pins=str(self.pin_dir), reopened=self.reopened,
                       program=self.loaded.program.id, streams=len(self._streams))

    def _compatible(self) -> bool:
        return all(self._map(name).value_size == size for name, size in _VALUE_SIZES.items())

    def _read_back(self) -> None:
        self._vips = {name: self._map(name).items() for name in _VIP_MAPS}
        size = fastmaps.TARGET.size
        raw = self._map("targets").array_values()
        self._targets = {i: raw[i * size:(i + 1) * size] for i in range(len(raw) // size)
                         if raw[i * size:(i + 1) * size] != bytes(size)}
        names = self._map("flow_names").array_values()
        self._flow_fps = {i: fp for i, (fp,) in enumerate(struct.iter_unpack("<Q", names)) if fp}
        self._streams = {}
        raw = self._map("streams").array_values()
        for slot, (seed, m, gen, _) in enumerate(fastmaps.STREAM.iter_unpack(raw)):
            inner_id = self._map("tables").lookup(_key(slot))
            if m == 0 or inner_id is None:
                continue
            table = bpf.map_by_id(struct.unpack("<I", inner_id)[0], f"table{slot}")
            values = array.array("I", table.array_values())
            if len(values) != 2 * m:
                table.close()
                continue
            self._streams[slot] = _Stream(seed, m, gen, table, [tuple(values[:m]), tuple(values[m:])])

    # --- apply ---------------------------------------------------------------------------------

    def nexthops(self) -> dict[tuple[int, int], fastmaps.Nexthop]:
        """(table, IP version) -> the default route's device and gateway, from the kernel's routes."""
        out = {}
        for r in self._nl.routes():
            if r.table >= self.first_fwmark and r.dst in ("0.0.0.0/0", "::/0") and r.gateway and r.oif:
                version = 4 if r.family == socket.AF_INET else 6
                out[(r.table, version)] = fastmaps.Nexthop(int(r.oif), ipaddress.ip_address(r.gateway))
        return out

    def _assign_slots(self, config: LbConfig) -> tuple[dict[str, int], dict[str, int], list[int]]:
        if not self._stream_slots.held:  # after a (re)start: streams keep the slot that holds their seed
            by_seed = {s.seed: slot for slot, s in self._streams.items()}
            self._stream_slots.held = {s.name: by_seed[s.seed] for s in config.streams if s.seed in by_seed}
        streams, _ = self._stream_slots.assign(s.name for s in config.streams)
        names = {fastmaps.flow_key(f) for f in config.flows}
        if not self._flow_slots.held and self._flow_fps:
            by_fp = {fp: slot for slot, fp in self._flow_fps.items()}
            self._flow_slots.held = {n: by_fp[fastmaps.name_fingerprint(n)] for n in names
                                     if fastmaps.name_fingerprint(n) in by_fp}
        flows, new = self._flow_slots.assign(names)
        return streams, flows, new

    def apply(self, config: LbConfig) -> FastApplyResult:
        start = time.perf_counter()
        streams, flows, new_flow_slots = self._assign_slots(config)
        image = fastmaps.encode(config, first_fwmark=self.first_fwmark, stream_slots=streams, flow_slots=flows,
                                nexthops=self.nexthops())
        entries = self._write_targets(image.targets, final=False)
        buckets = sum(self._write_stream(slot, s) for slot, s in sorted(image.streams.items()))
        entries += self._write_flow_slots(flows, new_flow_slots)
        for name in _VIP_MAPS:
            entries += self._write_vips(name, getattr(image, name))
        entries += self._drop_streams(set(image.streams))
        entries += self._write_targets(image.targets, final=True)
        entries += self._drop_flow_slots(set(flows.values()))
        self.image = image
        attached = self._attach()
        return FastApplyResult(time.perf_counter() - start, buckets, entries, attached)

    def _write_targets(self, targets: Mapping[int, bytes], *, final: bool) -> int:
        m, n = self._map("targets"), 0
        if not final:
            zero = bytes(fastmaps.STATS.size * bpf.possible_cpus())
            for slot, value in sorted(targets.items()):
                if slot not in self._targets:  # a new target counts from 0, as its new nft counter does
                    self._map("target_stats").update(_key(slot), zero)
                if self._targets.get(slot) != value:
                    m.update(_key(slot), value)
                    self._targets[slot] = value
                    n += 1
            return n
        for slot in sorted(set(self._targets) - set(targets)):
            m.update(_key(slot), bytes(fastmaps.TARGET.size))
            del self._targets[slot]
            n += 1
        return n

    def _write_stream(self, slot: int, want: fastmaps.StreamImage) -> int:
        have = self._streams.get(slot)
        if have is not None and (have.m != want.m or have.seed != want.seed):
            self._drop_stream(slot)
            have = None
        if have is None:
            table = bpf.create_inner_array(f"table{slot}", 2 * want.m)
            values = array.array("I", want.table + want.table)
            table.update_batch(array.array("I", range(2 * want.m)).tobytes(), values.tobytes(), 2 * want.m)
            self._map("tables").update(_key(slot), struct.pack("<I", table.fd))
            self._map("streams").update(_key(slot), fastmaps.STREAM.pack(want.seed, want.m, 0, 0))
            self._streams[slot] = _Stream(want.seed, want.m, 0, table, [want.table, want.table])
            return 2 * want.m
        if have.halves[have.gen] == want.table:
            return 0
        spare = 1 - have.gen
        old = have.halves[spare]
        changed = [] if old == want.table else [b for b, (a, c) in enumerate(zip(old, want.table)) if a != c]
        if changed:
            base = spare * want.m
            keys = array.array("I", (base + b for b in changed))
            values = array.array("I", (want.table[b] for b in changed))
            have.table.update_batch(keys.tobytes(), values.tobytes(), len(changed))
        have.halves[spare] = want.table
        self._map("streams").update(_key(slot), fastmaps.STREAM.pack(want.seed, want.m, spare, 0))
        have.gen = spare
        return len(changed)

    def _drop_stream(self, slot: int) -> None:
        self._map("streams").update(_key(slot), fastmaps.STREAM.pack(0, 0, 0, 0))
        self._map("tables").delete(_key(slot))
        gone = self._streams.pop(slot, None)
        if gone is not None:
            gone.table.close()

    def _drop_streams(self, wanted: set[int]) -> int:
        gone = sorted(set(self._streams) - wanted)
        for slot in gone:
            self._drop_stream(slot)
        return len(gone)

    def _write_flow_slots(self, flows: Mapping[str, int], new: Iterable[int]) -> int:
        n = 0
        zero = bytes(fastmaps.STATS.size * bpf.possible_cpus())
        by_slot = {slot: name for name, slot in flows.items()}
        for slot in sorted(new):
            self._map("flow_stats").update(_key(slot), zero)
            n += 1
        for slot, name in sorted(by_slot.items()):
            fp = fastmaps.name_fingerprint(name)
            if self._flow_fps.get(slot) != fp:
                self._map("flow_names").update(_key(slot), struct.pack("<Q", fp))
                self._flow_fps[slot] = fp
                n += 1
        return n

    def _drop_flow_slots(self, wanted: set[int]) -> int:
        gone = sorted(set(self._flow_fps) - wanted)
        for slot in gone:
            self._map("flow_names").update(_key(slot), struct.pack("<Q", 0))
            del self._flow_fps[slot]
        return len(gone)

    def _write_vips(self, name: str, want: Mapping[bytes, bytes]) -> int:
        m, have, n = self._map(name), self._vips.setdefault(name, {}), 0
        for key, value in sorted(want.items()):
            if have.get(key) != value:
                m.update(key, value)
                have[key] = value
                n += 1
        for key in sorted(set(have) - set(want)):
            m.delete(key)
            del have[key]
            n += 1
        return n

    # --- attachment ----------------------------------------------------------------------------

    def _wanted_interfaces(self) -> dict[str, int]:
        links = {link.name: link.index for link in self._nl.links()}
        if self.interfaces:
            return {n: i for n, i in links.items() if n in self.interfaces}
        return {n: i for n, i in links.items()
                if n != "lo" and not (self.exclude_prefix and n.startswith(self.exclude_prefix))}

    def _attach(self) -> tuple[str, ...]:
        wanted = self._wanted_interfaces()
        prog_id = self.loaded.program.id
        for name, index in sorted(wanted.items()):
            if self._attached.get(name) == index:
                continue
            if prog_id not in bpf.tc_attached(name, netns=self.netns):
                bpf.tc_attach(name, self.pin_dir / "prog", netns=self.netns)
                self._log.info("fastpathAttached", interface=name, program=prog_id)
            self._attached[name] = index
        for name in set(self._attached) - set(wanted):
            del self._attached[name]
        return tuple(sorted(self._attached))

    @staticmethod
    def detach_everywhere(nl: Netlink, *, netns: str | None = None, log: logmod.Logger = logmod.null) -> None:
        """Take a fast path left by an earlier run off every interface (the daemon runs without one)."""
        for link in nl.links():
            if bpf.tc_attached(link.name, netns=netns):
                bpf.tc_detach(link.name, netns=netns)
                log.info("fastpathDetached", interface=link.name, reason="fastpathOff")

    def detach(self) -> None:
        """Take the program off every interface it serves (everything goes the slow path)."""
        for name in sorted(self._wanted_interfaces()):
            try:
                bpf.tc_detach(name, netns=self.netns)
            except bpf.BpfError as exc:
                self._log.warning("fastpathDetachFailed", interface=name, error=str(exc))
        self._attached = {}

    # --- counters and removal ------------------------------------------------------------------

    def _read(self, name: str, slot: int) -> CounterValue:
        raw = self._map(name).lookup(_key(slot)) or b""
        packets = bytes_ = 0
        for p, b in fastmaps.STATS.iter_unpack(raw):
            packets += p
            bytes_ += b
        return CounterValue(packets, bytes_)

    def counters(self) -> dict[str, CounterValue]:
        """Flow and target counters of the packets the fast path forwarded, under nft's counter names."""
        image = self.image
        if image is None or self._loaded is None:
            return {}
        out = {name: self._read("flow_stats", slot) for name, slot in image.flow_counters.items()}
        out.update({name: self._read("target_stats", slot) for name, slot in image.target_counters.items()})
        return out

    def _unpin(self) -> None:
        for name in ("prog", *MAPS):
            (self.pin_dir / name).unlink(missing_ok=True)

    def close(self) -> None:
        for s in self._streams.values():
            s.table.close()
        self._streams = {}
        if self._loaded is not None:
            self._loaded.close()
            self._loaded = None

    def remove(self) -> None:
        """Detach, close and remove every pin (the bpffs itself belongs to whoever mounted it)."""
        self.detach()
        self.close()
        self._unpin()
