"""eBPF objects from Python: ctypes on Debian's ``libbpf.so.1`` (libbpf 1.1), plus ``tc`` to attach.

What the load balancer's fast path needs and nothing more: open and load an object file, pin its
program and maps on a private bpffs, re-open pins (:func:`open_pinned`), create inner maps for
map-in-map slots and re-open them by id, element and batch updates, per-CPU values, and the tc clsact
ingress attachment (``tc filter ... bpf direct-action object-pinned``) in a given network namespace.

Why ctypes on libbpf: it is Debian's maintained loader (BTF, map-in-map templates, relocations),
needs nothing built, and ``libbpf1`` is all a running system needs (pinned on Debian 12: 1.1.2).
Why ``tc`` and not a tcx link: Debian 12's iproute2 and headers cannot attach tcx, clsact works
(``shared/spec/ebpf-datapath-verified.md``).

Why a private bpffs: ``ip netns exec`` remounts ``/sys``, so pins under ``/sys/fs/bpf`` are not visible
inside it; a bpffs mounted elsewhere in the host's mount namespace is.
"""
from __future__ import annotations

import ctypes
import dataclasses
import errno
import functools
import json
import os
import pathlib
import subprocess
from collections.abc import Iterator, Sequence

from meridio.kernel import netns as netnsmod

__all__ = ["BpfError", "Map", "Program", "LoadedObject", "load_object", "open_pinned", "open_program",
           "create_inner_array", "map_by_id", "possible_cpus", "is_bpffs", "mount_bpffs", "unmount_bpffs", "bpffs_under",
           "tc_attach", "tc_detach", "tc_attached", "test_run", "BPF_MAP_TYPE_ARRAY", "BPF_F_INNER_MAP",
           "TC_PREF"]

LIBBPF = "libbpf.so.1"
BPF_MAP_TYPE_ARRAY = 2
BPF_F_INNER_MAP = 1 << 12
TC_PREF = 0x4d52
"""tc filter preference of the fast path on clsact ingress (one per interface, ours by this number)."""


class BpfError(OSError):
    """A libbpf or tc call failed; ``str()`` names the call and the object."""


class _CreateOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("btf_fd", ctypes.c_uint32), ("btf_key_type_id", ctypes.c_uint32),
                ("btf_value_type_id", ctypes.c_uint32), ("btf_vmlinux_value_type_id", ctypes.c_uint32),
                ("inner_map_fd", ctypes.c_uint32), ("map_flags", ctypes.c_uint32), ("map_extra", ctypes.c_uint64),
                ("numa_node", ctypes.c_uint32), ("map_ifindex", ctypes.c_uint32)]


class _BatchOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class _MapInfo(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32),
                ("name", ctypes.c_char * 16), ("ifindex", ctypes.c_uint32),
                ("btf_vmlinux_value_type_id", ctypes.c_uint32), ("netns_dev", ctypes.c_uint64),
                ("netns_ino", ctypes.c_uint64), ("btf_id", ctypes.c_uint32), ("btf_key_type_id", ctypes.c_uint32),
                ("btf_value_type_id", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("map_extra", ctypes.c_uint64)]


class _ProgInfo(ctypes.Structure):  # the head of struct bpf_prog_info: type, id, tag
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8)]


class _TestRunOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("data_in", ctypes.c_void_p), ("data_out", ctypes.c_void_p),
                ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32), ("ctx_in", ctypes.c_void_p),
                ("ctx_out", ctypes.c_void_p), ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
                ("retval", ctypes.c_uint32), ("repeat", ctypes.c_int), ("duration", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32), ("batch_size", ctypes.c_uint32)]


@functools.lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(LIBBPF, use_errno=True)
    except OSError as exc:
        raise BpfError(errno.ENOENT, f"{LIBBPF} is not installed (Debian package libbpf1): {exc}") from None
    vp, cp, i, u32, u64 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_uint64
    sigs: dict[str, tuple[list[object], object]] = {
        "bpf_object__open_file": ([cp, vp], vp), "bpf_object__load": ([vp], i), "bpf_object__close": ([vp], None),
        "bpf_object__find_map_by_name": ([vp, cp], vp), "bpf_object__find_program_by_name": ([vp, cp], vp),
        "bpf_map__fd": ([vp], i), "bpf_program__fd": ([vp], i), "bpf_obj_pin": ([i, cp], i), "bpf_obj_get": ([cp], i),
        "bpf_map_create": ([i, cp, u32, u32, u32, vp], i), "bpf_map_get_fd_by_id": ([u32], i),
        "bpf_map_update_elem": ([i, vp, vp, u64], i), "bpf_map_lookup_elem": ([i, vp, vp], i),
        "bpf_map_delete_elem": ([i, vp], i), "bpf_map_get_next_key": ([i, vp, vp], i),
        "bpf_map_update_batch": ([i, vp, vp, vp, vp], i), "bpf_map_lookup_batch": ([i, vp, vp, vp, vp, vp, vp], i),
        "bpf_obj_get_info_by_fd": ([i, vp, vp], i), "libbpf_num_possible_cpus": ([], i),
        "bpf_prog_test_run_opts": ([i, vp], i),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = res
    return lib


def _check(rc: int, what: str) -> int:
    if rc < 0:
        code = -rc if rc != -1 else (ctypes.get_errno() or errno.EIO)
        raise BpfError(code, f"{what}: {os.strerror(code)}")
    return rc


@functools.lru_cache(maxsize=1)
def possible_cpus() -> int:
    """CPUs a per-CPU map holds a value for (libbpf reads /sys/devices/system/cpu/possible)."""
    return _check(_lib().libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")


def _buf(data: bytes | bytearray) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(bytes(data), len(data))


@dataclasses.dataclass
class Map:
    """An open BPF map (its own fd; :meth:`close` it). Keys and values are raw bytes."""

    fd: int
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    id: int
    percpu: bool = False

    @property
    def stored_value_size(self) -> int:
        """Bytes of one value as user space reads it: per-CPU maps hold one 8-byte-aligned copy per CPU."""
        if not self.percpu:
            return self.value_size
        return ((self.value_size + 7) // 8 * 8) * possible_cpus()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def lookup(self, key: bytes) -> bytes | None:
        out = ctypes.create_string_buffer(self.stored_value_size)
        rc = _lib().bpf_map_lookup_elem(self.fd, _buf(key), out)
        if rc < 0:
            if ctypes.get_errno() == errno.ENOENT or rc == -errno.ENOENT:
                return None
            _check(rc, f"lookup in map {self.name}")
        return out.raw

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        _check(_lib().bpf_map_update_elem(self.fd, _buf(key), _buf(value), flags), f"update of map {self.name}")

    def delete(self, key: bytes) -> bool:
        rc = _lib().bpf_map_delete_elem(self.fd, _buf(key))
        if rc < 0 and (rc == -errno.ENOENT or ctypes.get_errno() == errno.ENOENT):
            return False
        _check(rc, f"delete in map {self.name}")
        return True

    def keys(self) -> Iterator[bytes]:
        """Every key (hash and LPM maps; an array has all of 0..max_entries-1)."""
        nxt = ctypes.create_string_buffer(self.key_size)
        cur: ctypes.Array[ctypes.c_char] | None = None
        while True:
            rc = _lib().bpf_map_get_next_key(self.fd, cur, nxt)
            if rc < 0:
                if rc == -errno.ENOENT or ctypes.get_errno() == errno.ENOENT:
                    return
                _check(rc, f"keys of map {self.name}")
            yield nxt.raw
            cur = _buf(nxt.raw)

    def items(self) -> dict[bytes, bytes]:
        out = {}
        for key in list(self.keys()):
            value = self.lookup(key)
            if value is not None:
                out[key] = value
        return out

    def update_batch(self, keys: bytes, values: bytes, count: int) -> None:
        """``count`` elements in one syscall (atomic per element, not for the batch)."""
        if count == 0:
            return
        n = ctypes.c_uint32(count)
        opts = _BatchOpts(ctypes.sizeof(_BatchOpts), 0, 0)
        _check(_lib().bpf_map_update_batch(self.fd, _buf(keys), _buf(values), ctypes.byref(n), ctypes.byref(opts)),
               f"batch update of map {self.name}")

    def array_values(self) -> bytes:
        """All values of an array map, in index order, as one buffer (batch lookups)."""
        size = self.stored_value_size
        out = bytearray()
        keys = ctypes.create_string_buffer(4 * 65536)
        values = ctypes.create_string_buffer(size * 65536)
        in_batch = ctypes.c_uint32(0)
        out_batch = ctypes.c_uint32(0)
        first = True
        opts = _BatchOpts(ctypes.sizeof(_BatchOpts), 0, 0)
        while len(out) < size * self.max_entries:
            n = ctypes.c_uint32(65536)
            rc = _lib().bpf_map_lookup_batch(self.fd, None if first else ctypes.byref(in_batch),
                                             ctypes.byref(out_batch), keys, values, ctypes.byref(n), ctypes.byref(opts))
            if rc < 0 and not (rc == -errno.ENOENT or ctypes.get_errno() == errno.ENOENT):
                _check(rc, f"batch lookup of map {self.name}")
            out += values.raw[:size * n.value]
            if rc < 0:
                break
            in_batch.value = out_batch.value
            first = False
        return bytes(out)


def _info(fd: int, name: str) -> Map:
    info = _MapInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    _check(_lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), f"info of map {name}")
    percpu = info.type in (5, 6, 10)  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
    return Map(fd, name or info.name.decode(), info.type, info.key_size, info.value_size, info.max_entries, info.id,
               percpu)


@dataclasses.dataclass
class Program:
    fd: int
    id: int
    tag: str

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _program(fd: int) -> Program:
    info = _ProgInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    _check(_lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), "info of program")
    return Program(fd, info.id, bytes(info.tag).hex())


@dataclasses.dataclass
class LoadedObject:
    program: Program
    maps: dict[str, Map]

    def close(self) -> None:
        self.program.close()
        for m in self.maps.values():
            m.close()


def _obj_get(path: pathlib.Path) -> int:
    return _check(_lib().bpf_obj_get(str(path).encode()), f"open pin {path}")


def load_object(path: pathlib.Path, program: str, maps: Sequence[str], pin_dir: pathlib.Path) -> LoadedObject:
    """Load ``path`` into the kernel and pin ``program`` as ``pin_dir/prog`` and each map as ``pin_dir/<map>``.

    The returned fds are dups owned by the caller: the libbpf object is closed before returning (the pins
    and the fds keep everything alive).
    """
    lib = _lib()
    if not path.is_file():
        raise BpfError(errno.ENOENT, f"BPF object {path} is not built (run ./run.sh setup)")
    obj = lib.bpf_object__open_file(str(path).encode(), None)
    if not obj:
        code = ctypes.get_errno() or errno.EINVAL
        raise BpfError(code, f"open of BPF object {path}: {os.strerror(code)}")
    try:
        _check(lib.bpf_object__load(obj), f"load of BPF object {path} (the verifier's log is on stderr)")
        prog = lib.bpf_object__find_program_by_name(obj, program.encode())
        if not prog:
            raise BpfError(errno.ENOENT, f"no program {program} in {path}")
        pin_dir.mkdir(parents=True, exist_ok=True)
        prog_fd = os.dup(_check(lib.bpf_program__fd(prog), "program fd"))
        _check(lib.bpf_obj_pin(prog_fd, str(pin_dir / "prog").encode()), f"pin of {pin_dir / 'prog'}")
        opened = {}
        for name in maps:
            m = lib.bpf_object__find_map_by_name(obj, name.encode())
            if not m:
                raise BpfError(errno.ENOENT, f"no map {name} in {path}")
            fd = os.dup(_check(lib.bpf_map__fd(m), f"fd of map {name}"))
            _check(lib.bpf_obj_pin(fd, str(pin_dir / name).encode()), f"pin of {pin_dir / name}")
            opened[name] = _info(fd, name)
        return LoadedObject(_program(prog_fd), opened)
    finally:
        lib.bpf_object__close(obj)


def open_program(pin: pathlib.Path) -> Program:
    return _program(_obj_get(pin))


def open_pinned(pin_dir: pathlib.Path, maps: Sequence[str]) -> LoadedObject:
    """Re-open what :func:`load_object` pinned (raises :class:`BpfError` ENOENT if a pin is missing)."""
    prog = open_program(pin_dir / "prog")
    opened: dict[str, Map] = {}
    try:
        for name in maps:
            opened[name] = _info(_obj_get(pin_dir / name), name)
    except BpfError:
        prog.close()
        for m in opened.values():
            m.close()
        raise
    return LoadedObject(prog, opened)


def create_inner_array(name: str, max_entries: int, value_size: int = 4) -> Map:
    """A ``BPF_F_INNER_MAP`` array (its size may differ from the outer map's template)."""
    opts = _CreateOpts(sz=ctypes.sizeof(_CreateOpts), map_flags=BPF_F_INNER_MAP)
    fd = _check(_lib().bpf_map_create(BPF_MAP_TYPE_ARRAY, name.encode()[:15], 4, value_size, max_entries,
                                      ctypes.byref(opts)), f"create of map {name} ({max_entries} entries)")
    return _info(fd, name)


def map_by_id(map_id: int, name: str = "") -> Map:
    """Open the map with kernel id ``map_id`` (e.g. an inner map read out of an outer map's slot)."""
    return _info(_check(_lib().bpf_map_get_fd_by_id(map_id), f"open map id {map_id}"), name)


def test_run(prog: Program, packet: bytes) -> tuple[int, bytes]:
    """Run the program once on ``packet`` (BPF_PROG_TEST_RUN): (return code, packet as it left)."""
    out = ctypes.create_string_buffer(len(packet) + 256)
    data = _buf(packet)
    opts = _TestRunOpts(sz=ctypes.sizeof(_TestRunOpts), data_in=ctypes.cast(data, ctypes.c_void_p),
                        data_out=ctypes.cast(out, ctypes.c_void_p), data_size_in=len(packet),
                        data_size_out=len(out), repeat=1)
    _check(_lib().bpf_prog_test_run_opts(prog.fd, ctypes.byref(opts)), "test run")
    return opts.retval, out.raw[:opts.data_size_out]


# --- bpffs ---------------------------------------------------------------------------------------

def is_bpffs(path: pathlib.Path) -> bool:
    """Whether ``path`` is the mount point of a bpffs (in this process's mount namespace)."""
    target = str(path.resolve())
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[4] == target and fields[sep + 1] == "bpf":
                return True
    return False


def mount_bpffs(path: pathlib.Path) -> bool:
    """Mount a private bpffs on ``path`` (created); False if one was already there."""
    path.mkdir(parents=True, exist_ok=True)
    if is_bpffs(path):
        return False
    _run(["mount", "-t", "bpf", "bpf", str(path)], f"mount of a bpffs on {path}")
    return True


def bpffs_under(root: pathlib.Path) -> list[pathlib.Path]:
    """Mount points of bpffs at or below ``root`` (deepest first)."""
    top = str(root.resolve())
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point = fields[4]
            if fields[sep + 1] == "bpf" and (point == top or point.startswith(top.rstrip("/") + "/")):
                found.append(pathlib.Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_bpffs(path: pathlib.Path) -> None:
    """Unmount the bpffs on ``path`` (its pins go with it) and remove the empty directory."""
    if is_bpffs(path):
        _run(["umount", str(path)], f"unmount of {path}")
    try:
        path.rmdir()
    except FileNotFoundError:
        pass


# --- tc ------------------------------------------------------------------------------------------

def _run(argv: list[str], what: str, netns: str | None = None) -> str:
    proc = subprocess.run(netnsmod.exec_argv(netns, argv), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BpfError(errno.EIO, f"{what}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def tc_attached(ifname: str, *, netns: str | None = None) -> list[int]:
    """Program ids attached on ``ifname``'s clsact ingress at :data:`TC_PREF` (empty if none)."""
    proc = subprocess.run(netnsmod.exec_argv(netns, ["tc", "-j", "filter", "show", "dev", ifname, "ingress"]),
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    ids = []
    for f in json.loads(proc.stdout):
        prog = f.get("options", {}).get("prog", {})
        if f.get("pref") == TC_PREF and "id" in prog:
            ids.append(int(prog["id"]))
    return ids


def tc_attach(ifname: str, pin: pathlib.Path, *, netns: str | None = None) -> None:
    """Attach the pinned program on ``ifname``'s clsact ingress, direct-action (replaces ours atomically)."""
    proc = subprocess.run(netnsmod.exec_argv(netns, ["tc", "qdisc", "add", "dev", ifname, "clsact"]),
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0 and "File exists" not in proc.stderr and "Exclusivity flag on" not in proc.stderr:
        raise BpfError(errno.EIO, f"clsact qdisc on {ifname}: {proc.stderr.strip()}")
    _run(["tc", "filter", "replace", "dev", ifname, "ingress", "pref", str(TC_PREF), "handle", "1", "bpf",
          "direct-action", "object-pinned", str(pin)], f"attach of {pin} on {ifname}", netns)


def tc_detach(ifname: str, *, netns: str | None = None) -> None:
    """Remove our filter from ``ifname`` (and the clsact qdisc when no other filter is left on it)."""
    if not tc_attached(ifname, netns=netns):
        return
    _run(["tc", "filter", "del", "dev", ifname, "ingress", "pref", str(TC_PREF)], f"detach on {ifname}", netns)
    left = []
    for direction in ("ingress", "egress"):
        proc = subprocess.run(netnsmod.exec_argv(netns, ["tc", "-j", "filter", "show", "dev", ifname, direction]),
                              capture_output=True, text=True, check=False)
        if proc.returncode == 0 and proc.stdout.strip():
            left += json.loads(proc.stdout)
    if not left:
        subprocess.run(netnsmod.exec_argv(netns, ["tc", "qdisc", "del", "dev", ifname, "clsact"]),
                       capture_output=True, check=False)
