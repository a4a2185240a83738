"""IPAM first-fit arithmetic: where a new sub-prefix goes, given its siblings."""
from __future__ import annotations

import ipaddress

import pytest

from meridio.ipam import prefixes

N = ipaddress.ip_network


@pytest.mark.parametrize("parent,length,taken,expected", [
    ("172.16.0.0/16", 20, [], "172.16.0.0/20"),
    ("172.16.0.0/16", 20, ["172.16.0.0/20", "172.16.16.0/20"], "172.16.32.0/20"),
    ("172.16.0.0/16", 20, ["172.16.0.0/20", "172.16.32.0/20"], "172.16.16.0/20"),
    ("172.16.0.0/16", 24, ["172.16.0.0/23"], "172.16.2.0/24"),
    ("172.16.0.0/16", 20, ["172.16.3.0/24"], "172.16.16.0/20"),
    ("172.16.1.0/24", 32, ["172.16.1.0/32", "172.16.1.1/32", "172.16.1.3/32"], "172.16.1.2/32"),
    ("fd00::/48", 56, [], "fd00::/56"),
    ("fd00::/48", 56, ["fd00::/56"], "fd00:0:0:100::/56"),
    ("fd00:0:0:1::/64", 128, ["fd00:0:0:1::/128"], "fd00:0:0:1::1/128"),
], ids=["empty", "after-siblings", "first-hole", "past-larger-sibling", "aligned-after-smaller-sibling",
        "single-address-hole", "ipv6-empty", "ipv6-next", "ipv6-address"])
def test_first_fit_takes_the_first_free_aligned_sub_prefix(parent: str, length: int, taken: list[str],
                                                         expected: str) -> None:
    assert prefixes.first_fit(N(parent), length, [N(t) for t in taken]) == N(expected)


def test_siblings_outside_the_parent_or_of_the_other_family_do_not_collide() -> None:
    taken = [N("10.0.0.0/24"), N("fd00::/64")]
    assert prefixes.first_fit(N("172.16.0.0/30"), 32, taken) == N("172.16.0.0/32")


def test_a_full_parent_has_no_more_prefix_available() -> None:
    taken = [N(f"172.16.0.{i}/32") for i in range(4)]
    with pytest.raises(prefixes.NoMorePrefix, match="no more prefix available"):
        prefixes.first_fit(N("172.16.0.0/30"), 32, taken)


@pytest.mark.parametrize("length", [15, 33], ids=["shorter-than-parent", "longer-than-address"])
def test_a_length_outside_the_parent_is_refused(length: int) -> None:
    with pytest.raises(ValueError, match=f"/{length}"):
        prefixes.first_fit(N("172.16.0.0/16"), length, [])


def test_edge_addresses_are_the_first_and_last_address() -> None:
    assert prefixes.edge_addresses(N("172.16.1.0/24")) == (N("172.16.1.0/32"), N("172.16.1.255/32"))
    assert prefixes.edge_addresses(N("fd00::/64")) == (N("fd00::/128"), N("fd00::ffff:ffff:ffff:ffff/128"))
