"""The environment model: the built-in default and the errors a user gets for a bad environment file."""
from __future__ import annotations

import ipaddress
import pathlib

import pytest
import yaml

from meridio.runtime.local import environment as envmod


def _minimal(**extra: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "lab",
        "networks": [{"name": "seg", "ipv4": "169.254.100.0/24", "ipv6": "2001:db8:100::/64",
                      "attachments": ["nad-1"], "vlan": 100}],
        "routers": [{"name": "gw", "trench": "trench-a", "network": "seg", "ipv4": "169.254.100.150",
                     "bgp": {}, "traffic-generator": {"ipv4": "192.0.2.0/24"}}],
    }
    data.update(extra)
    return data


def test_default_environment_mirrors_meridio_e2e_dual_stack() -> None:
    env = envmod.load_default()
    assert env.nodes == ("node-1", "node-2")
    assert {d.name: d.replicas for d in env.deployments} == {"target-a": 4, "target-b": 4}
    assert [r.network for r in env.trench_routers("trench-a")] == ["vlan-100", "vlan-101", "vlan-102"]
    assert [r.network for r in env.trench_routers("trench-b")] == ["vlan-200"]
    assert all(r.ipv4 and r.ipv6 and r.traffic_generator for r in env.routers)
    # trench-b reuses trench-a's external addresses on its own segment
    assert env.network("vlan-200").ipv4 == env.network("vlan-100").ipv4  # type: ignore[union-attr]
    assert env.router("gw-b1").ipv4 == env.router("gw-a1").ipv4  # type: ignore[union-attr]
    bgp = env.router("gw-a1").bgp  # type: ignore[union-attr]
    assert bgp is not None and bgp.bfd == envmod.Bfd(300, 300, 5) and bgp.port == 10179 and bgp.hold_time_s == 24
    assert [p.name for p in env.resources] == ["init-trench-a.yaml", "init-trench-b.yaml"]


def test_external_addresses_of_the_default_environment_are_documentation_ranges() -> None:
    env = envmod.load_default()
    allowed = [ipaddress.ip_network(n) for n in ("169.254.0.0/16", "192.0.2.0/24", "2001:db8::/32")]
    nets = [n for net in env.networks for n in (net.ipv4, net.ipv6) if n]
    nets += [n for r in env.routers if r.traffic_generator for n in (r.traffic_generator.ipv4, r.traffic_generator.ipv6) if n]
    assert nets and all(any(n.subnet_of(a) for a in allowed if a.version == n.version) for n in nets)  # type: ignore[arg-type]


def test_network_is_found_by_attachment_name_with_or_without_namespace_then_by_vlan() -> None:
    env = envmod.parse(_minimal())
    assert env.network_for(attachment="nad-1").name == "seg"  # type: ignore[union-attr]
    assert env.network_for(attachment="red/nad-1").name == "seg"  # type: ignore[union-attr]
    assert env.network_for(attachment="other", vlan=100).name == "seg"  # type: ignore[union-attr]
    assert env.network_for(attachment="other") is None


def test_traffic_generator_takes_the_second_host_and_the_router_the_first() -> None:
    tg = envmod.parse(_minimal()).routers[0].traffic_generator
    assert tg is not None
    assert str(tg.router_address(4)) == "192.0.2.1/24" and str(tg.generator_address(4)) == "192.0.2.2/24"
    assert tg.generator_address(6) is None


def test_resource_paths_resolve_against_the_file_and_the_e2e_tag(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(_minimal(resources=["mine.yaml", "@e2e/new-vip.yaml", "/abs/x.yaml"])))
    env = envmod.load(path)
    assert env.resources == (tmp_path / "mine.yaml", envmod.EXAMPLES_E2E / "new-vip.yaml", pathlib.Path("/abs/x.yaml"))


def test_short_names_give_their_own_prefix_and_long_names_need_one() -> None:
    assert envmod.parse(_minimal()).prefix == "lab"
    with pytest.raises(envmod.EnvironmentSpecError, match="prefix: required"):
        envmod.parse(_minimal(name="a-very-long-name"))
    assert envmod.parse(_minimal(name="a-very-long-name", prefix="avl")).prefix == "avl"


@pytest.mark.parametrize(("change", "message"), [
    ({"colour": "red"}, "colour: unknown field"),
    ({"name": "Bad_Name"}, "name: 'Bad_Name' is not a valid name"),
    ({"prefix": "toolongprefix"}, "prefix: 'toolongprefix' must be 1-6"),
    ({"nodes": "node-1"}, "nodes: must be a list"),
    ({"nodes": ["n", "n"]}, "nodes: duplicate name 'n'"),
    ({"networks": [{"name": "seg"}]}, "networks[0]: a network needs an ipv4 or an ipv6 subnet"),
    ({"networks": [{"name": "seg", "ipv4": "169.254.100.1/24"}]}, "networks[0].ipv4: '169.254.100.1/24' is not a valid IPv4 prefix"),
    ({"networks": [{"name": "seg", "ipv4": "2001:db8::/64"}]}, "networks[0].ipv4: '2001:db8::/64' is not an IPv4 prefix"),
    ({"networks": [{"name": "seg", "ipv4": "169.254.100.0/24", "vlan": 5000}]}, "networks[0].vlan: 5000 must be an integer between 1 and 4094"),
], ids=["unknown-field", "bad-name", "bad-prefix", "nodes-not-list", "duplicate-node", "network-without-subnet",
        "network-not-prefix", "network-wrong-family", "vlan-out-of-range"])
def test_invalid_top_level_fields_are_rejected_with_the_field_path(change: dict[str, object], message: str) -> None:
    with pytest.raises(envmod.EnvironmentSpecError) as err:
        envmod.parse(_minimal(**change))
    assert message in str(err.value)


@pytest.mark.parametrize(("router", "message"), [
    ({"network": "seg", "ipv4": "169.254.100.150"}, "routers[0]: exactly one of bgp and static"),
    ({"network": "seg", "ipv4": "169.254.100.150", "bgp": {}, "static": {}}, "routers[0]: exactly one of bgp and static"),
    ({"network": "nope", "ipv4": "169.254.100.150", "bgp": {}}, "routers[0].network: no network named 'nope'"),
    ({"network": "seg", "ipv4": "169.254.1.1", "bgp": {}}, "routers[0].ipv4: 169.254.1.1 is not in network seg's ipv4 subnet"),
    ({"network": "seg", "ipv4": "169.254.100.150", "bgp": {"hold-time": "2s"}}, "routers[0].bgp.hold-time: must be at least 3s"),
    ({"network": "seg", "ipv4": "169.254.100.150", "bgp": {"bfd": {"min-rx": "fast"}}},
     "routers[0].bgp.bfd.min-rx: 'fast' is not a duration"),
    ({"network": "seg", "bgp": {}}, "routers[0]: a router needs an ipv4 or an ipv6 address"),
    ({"network": "seg", "ipv6": "169.254.100.150", "bgp": {}}, "routers[0].ipv6: '169.254.100.150' is not an IPv6 address"),
], ids=["neither-bgp-nor-static", "both", "unknown-network", "address-outside-subnet", "hold-time-too-short",
        "bad-bfd-duration", "no-address", "wrong-family"])
def test_invalid_routers_are_rejected_with_the_field_path(router: dict[str, object], message: str) -> None:
    data = _minimal()
    data["routers"] = [{"name": "gw", "trench": "trench-a", **router}]
    with pytest.raises(envmod.EnvironmentSpecError) as err:
        envmod.parse(data)
    assert message in str(err.value)


def test_top_level_x_keys_hold_yaml_anchors_and_are_ignored() -> None:
    assert envmod.parse(_minimal(**{"x-templates": {"a": 1}})).name == "lab"


def test_malformed_yaml_names_the_file_and_line(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text("name: lab\nnodes: [a,\n")
    with pytest.raises(envmod.EnvironmentSpecError) as err:
        envmod.load(path)
    assert str(err.value).startswith(f"{path}:3:") and "invalid YAML" in str(err.value)


def test_a_missing_file_is_one_clear_sentence(tmp_path: pathlib.Path) -> None:
    with pytest.raises(envmod.EnvironmentSpecError, match="cannot read the environment file"):
        envmod.load(tmp_path / "absent.yaml")


def test_deployments_default_to_the_example_target_ports() -> None:
    env = envmod.parse(_minimal(deployments=[{"name": "t", "replicas": 2,
                                              "streams": [{"trench": "a", "conduit": "c", "stream": "s"}]}]))
    dep = env.deployment("t")
    assert dep is not None and dep.tcp_ports == (4000, 4001, 4002) and dep.udp_ports == (4003, 4004)
    assert dep.streams == (envmod.StreamRef("a", "c", "s"),)


def test_component_settings_are_strings_per_known_component() -> None:
    env = envmod.parse(_minimal(components={"nsp": {"NSP_ENTRY_TIMEOUT": "10s", "X": 3}}))
    assert env.components == {"nsp": {"NSP_ENTRY_TIMEOUT": "10s", "X": "3"}}
    with pytest.raises(envmod.EnvironmentSpecError, match="components.dns: unknown field"):
        envmod.parse(_minimal(components={"dns": {}}))
