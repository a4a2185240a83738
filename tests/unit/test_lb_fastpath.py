"""The eBPF fast path's pure parts: the Maglev C helper against the Python loop, the map encoding of
flows, VIP pieces, NATs and streams, slot keeping, and nft's jhash in Python.

Real: the C helper (built by ``run.sh setup``; its absence fails the test, it is not skipped).
Nothing here touches the kernel: the program itself runs in ``tests/netns/test_lb_fastpath.py``.
"""
from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meridio.kernel import native
from meridio.loadbalancer import fastmaps, maglev
from meridio.loadbalancer.flows import ByteMatch, FlowSpec, PortNatSpec, Protocol, TargetSpec
from meridio.loadbalancer.ruleset import LbConfig, StreamState


def _perms(ids: list[int], m: int, max_targets: int) -> tuple[list[int], list[int]]:
    perms = [maglev.permutation(i, m, max_targets) for i in ids]
    return [p[0] for p in perms], [p[1] for p in perms]


@pytest.mark.parametrize(("max_targets", "ids"), [
    (1, [1]), (3, [1, 2, 3]), (100, list(range(1, 101))), (100, [2, 50, 99]), (1000, list(range(1, 1001, 7))),
], ids=["one", "three", "full-100", "sparse-100", "every-7th-of-1000"])
def test_maglev_c_helper_fills_the_same_table_as_the_python_loop(max_targets: int, ids: list[int]) -> None:
    assert native.available(), "kernel/native/libmeridio_native.so is not built: run ./run.sh setup"
    m = maglev.table_size(max_targets)
    offsets, skips = _perms(ids, m, max_targets)
    c_table = tuple(native.maglev_fill(ids, offsets, skips, m))
    assert c_table == maglev.populate_python(ids, offsets, skips, m)
    assert maglev.populate(ids, m, max_targets) == c_table


@settings(max_examples=40, deadline=None)
@given(st.sets(st.integers(1, 50), min_size=1, max_size=50))
def test_maglev_c_helper_equals_python_for_any_target_set(ids: set[int]) -> None:
    m = maglev.table_size(50)
    order = sorted(ids)
    offsets, skips = _perms(order, m, 50)
    assert tuple(native.maglev_fill(order, offsets, skips, m)) == maglev.populate_python(order, offsets, skips, m)


@pytest.mark.parametrize(("ids", "offsets", "skips", "m"), [
    ([1], [0], [0], 7), ([1], [7], [1], 7), ([1, 2], [0], [1, 1], 7), ([], [], [], 7)],
    ids=["zero-skip", "offset-beyond-m", "lengths-differ", "no-targets"])
def test_maglev_c_helper_refuses_arguments_that_describe_no_table(ids: list[int], offsets: list[int],
                                                                  skips: list[int], m: int) -> None:
    with pytest.raises(native.NativeError):
        native.maglev_fill(ids, offsets, skips, m)


# --- nft's hash in Python ------------------------------------------------------------------------

def test_the_hash_key_is_nft_s_register_layout_with_each_port_zero_padded_to_four_bytes() -> None:
    key4 = fastmaps.hash_key("192.0.2.1", "203.0.113.10", 0x1234, 80)
    assert key4 == bytes([192, 0, 2, 1, 203, 0, 113, 10, 0x12, 0x34, 0, 0, 0, 80, 0, 0])
    assert len(fastmaps.hash_key("2001:db8::1", "2001:db8:f::10", 1, 2)) == 40


@settings(max_examples=200)
@given(st.binary(min_size=0, max_size=48), st.integers(0, 2**32 - 1), st.integers(1, 999983))
def test_buckets_are_reciprocal_scale_of_a_32_bit_jhash(key: bytes, seed: int, m: int) -> None:
    h = fastmaps.jhash(key, seed)
    assert 0 <= h < 2**32
    assert 0 <= (h * m) >> 32 < m


def test_jhash_of_an_empty_key_is_the_initial_value_as_in_the_kernel() -> None:
    # length 0 takes the kernel's "case 0: nothing left to add" and returns c untouched
    assert fastmaps.jhash(b"", 5) == (0xDEADBEEF + 5) & 0xFFFFFFFF


# --- map encoding --------------------------------------------------------------------------------

V4 = ipaddress.ip_network("203.0.113.10/32")
V4P = ipaddress.ip_network("203.0.113.128/28")
V6 = ipaddress.ip_network("2001:db8:f::10/128")
T1 = TargetSpec(1, (ipaddress.ip_address("169.254.101.1"), ipaddress.ip_address("2001:db8:101::1")))
NEXTHOPS = {(5001, 4): fastmaps.Nexthop(7, ipaddress.ip_address("169.254.101.1")),
            (5001, 6): fastmaps.Nexthop(7, ipaddress.ip_address("2001:db8:101::1"))}


def spec(name: str, *, priority: int = 1, stream: str = "s", vips: tuple = (V4, V6), sources: tuple = (),
         dports: tuple = (), matches: tuple = (), protocols: tuple = (Protocol.TCP, Protocol.UDP)) -> FlowSpec:
    return FlowSpec(stream, name, priority, protocols, sources, (), dports, vips, matches)


def encode(flows: list[FlowSpec], *, nats: tuple = (), vips: tuple = (V4, V6, V4P), streams: tuple | None = None,
           first: int = 5001) -> fastmaps.Image:
    stream_states = streams if streams is not None else (StreamState("s", 100, 5000, (T1,)),)
    config = LbConfig(vips=vips, streams=stream_states, flows=tuple(flows), port_nats=nats)
    return fastmaps.encode(config, first_fwmark=first, stream_slots={s.name: i for i, s in enumerate(stream_states)},
                           flow_slots={fastmaps.flow_key(f): i for i, f in enumerate(flows)}, nexthops=NEXTHOPS)


def flows_of(value: bytes) -> list[tuple[int, ...]]:
    """(stream, counter, protos, flags, nsrc, nsport, ndport, nbm) of each flow in a vip value."""
    nflows = struct.unpack_from("<I", value)[0]
    start = 8 + fastmaps.MAX_NATS * 8
    return [struct.unpack_from("<IIBBBBBB", value, start + i * fastmaps.FLOW) for i in range(nflows)]


def test_struct_sizes_match_the_c_layout() -> None:
    assert fastmaps.FLOW == 16 + 8 * 32 + 2 * 8 * 4 + 4 * 12 == 384
    assert fastmaps.VIP == 8 + 4 * 8 + 16 * 384
    assert fastmaps.TARGET.size == 28 and fastmaps.STREAM.size == 16


def test_flows_are_inlined_in_priority_order_with_their_counter_slot() -> None:
    image = encode([spec("low", priority=1), spec("high", priority=9)])
    entries = flows_of(image.vip4[V4.network_address.packed])
    assert [(e[1], e[2], e[3]) for e in entries] == [(1, 3, 0), (0, 3, 0)]  # high (slot 1) first, tcp|udp
    assert image.flow_counters == {"flow-s-low": 0, "flow-s-high": 1}


def test_an_exact_vip_is_a_hash_key_and_a_prefix_vip_lpm_keys() -> None:
    image = encode([spec("f", vips=(V4, V4P, V6))])
    assert set(image.vip4) == {V4.network_address.packed}
    assert set(image.vip6) == {V6.network_address.packed}
    assert set(image.vip4_prefixes) == {struct.pack("<I", 28) + V4P.network_address.packed}


def test_a_flow_that_cannot_match_a_family_is_left_out_of_that_family_s_pieces() -> None:
    image = encode([spec("v6-only", sources=(ipaddress.ip_network("2001:db8:e::/64"),))])
    assert flows_of(image.vip4[V4.network_address.packed]) == []
    assert len(flows_of(image.vip6[V6.network_address.packed])) == 1


def test_a_flow_with_more_sources_than_an_entry_holds_hands_its_packets_to_the_slow_path() -> None:
    many = tuple(ipaddress.ip_network(f"198.51.100.{8 * i}/29") for i in range(fastmaps.MAX_SRCS + 1))
    entries = flows_of(encode([spec("many", sources=many)]).vip4[V4.network_address.packed])
    assert [e[3] for e in entries] == [fastmaps.FLOW_SLOW]


def test_flows_beyond_the_entry_s_room_end_in_a_slow_sentinel() -> None:
    flows = [spec(f"f{i:02}", priority=100 - i) for i in range(fastmaps.MAX_FLOWS + 3)]
    entries = flows_of(encode(flows).vip4[V4.network_address.packed])
    assert len(entries) == fastmaps.MAX_FLOWS
    assert [e[3] for e in entries] == [0] * (fastmaps.MAX_FLOWS - 1) + [fastmaps.FLOW_SLOW]


def test_byte_matches_are_encoded_with_a_full_mask_when_none_is_given() -> None:
    bm = ByteMatch(Protocol.TCP, 13, 1, 0x02)
    value = encode([spec("syn", matches=(bm,))]).vip4[V4.network_address.packed]
    at = 8 + fastmaps.MAX_NATS * 8 + 16 + 8 * 32 + 2 * 8 * 4
    assert struct.unpack_from("<HBBII", value, at) == (13, 1, 0, 0x02, 0xFF)
    assert flows_of(value)[0][2] == 1  # the byte match names tcp: udp is dropped from the protocols


@pytest.mark.parametrize("nats", [
    (PortNatSpec(80, 4000, Protocol.TCP, (V4,)), PortNatSpec(4000, 5000, Protocol.TCP, (V4,))),
    tuple(PortNatSpec(80 + i, 4000 + i, Protocol.TCP, (V4,)) for i in range(fastmaps.MAX_NATS + 1)),
], ids=["chained", "too-many"])
def test_nats_the_program_cannot_apply_as_nft_does_make_the_piece_slow(nats: tuple) -> None:
    entries = flows_of(encode([spec("f")], nats=nats).vip4[V4.network_address.packed])
    assert [e[3] for e in entries] == [fastmaps.FLOW_SLOW]


def test_a_nat_is_encoded_only_on_the_pieces_it_covers() -> None:
    image = encode([spec("f")], nats=(PortNatSpec(80, 4000, Protocol.TCP, (V4,)),))
    assert struct.unpack_from("<IIBBHH", image.vip4[V4.network_address.packed]) == (1, 1, 1, 0, 80, 4000)
    assert struct.unpack_from("<II", image.vip6[V6.network_address.packed]) == (1, 0)


def test_a_stream_table_holds_target_slots_and_targets_their_nexthops() -> None:
    image = encode([spec("f")])
    stream = image.streams[0]
    assert stream.m == maglev.table_size(100) and set(stream.table) == {1}  # fwmark 5001 - first 5001 + 1
    assert image.targets[1] == fastmaps.TARGET.pack(7, 7, bytes([169, 254, 101, 1]),
                                                    ipaddress.ip_address("2001:db8:101::1").packed)
    assert image.target_counters == {"tgt-5001": 1}


def test_a_stream_without_targets_has_an_empty_table_so_the_slow_path_drops() -> None:
    image = encode([spec("f")], streams=(StreamState("s", 10, 5000, ()),))
    assert set(image.streams[0].table) == {0}


def test_a_stream_whose_targets_have_no_slot_goes_the_slow_path() -> None:
    far = StreamState("s", 100, 5000 + fastmaps.MAX_TARGETS, (T1,))
    image = encode([spec("f")], streams=(far,), first=5000)
    assert image.streams == {} and [e[3] for e in flows_of(image.vip4[V4.network_address.packed])] == [1]


def test_slots_are_kept_for_names_that_stay_and_freed_ones_reused() -> None:
    slots = fastmaps.Slots(3)
    held, new = slots.assign(["a", "b"])
    assert held == {"a": 0, "b": 1} and new == [0, 1]
    held, new = slots.assign(["b", "c", "d"])
    assert held == {"b": 1, "c": 0, "d": 2} and new == [0, 2]
    held, new = slots.assign(["b", "c", "d", "e"])  # no room: e is left out (its packets go the slow path)
    assert "e" not in held and new == []


def test_a_byte_match_beyond_what_an_entry_encodes_hands_its_flow_to_the_slow_path() -> None:
    far = ByteMatch(Protocol.TCP, 70000, 1, 0x02)  # nftables refuses it; the fast path must not choke on it
    entries = flows_of(encode([spec("far", matches=(far,))]).vip4[V4.network_address.packed])
    assert [e[3] for e in entries] == [fastmaps.FLOW_SLOW]
