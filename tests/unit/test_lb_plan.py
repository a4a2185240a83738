"""Diffing installed against desired nftables content (pure): only what differs, in a valid order."""
from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from meridio.loadbalancer import maglev, plan, ruleset
from meridio.loadbalancer.nftobjects import Ruleset
from tests.unit import lb_samples as samples


def render(**kw: Any) -> Ruleset:
    return ruleset.render(samples.config(**kw))


def verbs(commands: list[str]) -> set[str]:
    return {" ".join(c.split()[:2]) for c in commands}


def test_nothing_is_sent_when_the_installed_state_is_the_desired_one() -> None:
    desired = render()
    assert plan.plan(plan.Installed.of(desired), desired) == []


def test_a_target_change_touches_only_its_buckets_and_counters_and_no_chain() -> None:
    before, after = render(targets_a=(1, 2)), render(targets_a=(1, 2, 3))
    commands = plan.plan(plan.Installed.of(before), after)
    assert verbs(commands) == {"delete element", "add element", "add counter"}
    changed = maglev.changed_buckets(maglev.populate([1, 2], 293, 3), maglev.populate([1, 2, 3], 293, 3))
    deleted = [c for c in commands if c.startswith("delete element inet meridio-lb s-stream-a ")]
    assert len(deleted) == 1 and deleted[0].count(",") + 1 == len(changed)
    assert not any("flush" in c or "rule" in c for c in commands)


def test_removing_the_last_target_deletes_every_bucket_element() -> None:
    commands = plan.plan(plan.Installed.of(render(targets_a=(1,))), render(targets_a=()))
    deleted = [c for c in commands if "delete element inet meridio-lb s-stream-a" in c]
    assert sum(c.count(",") + 1 for c in deleted) == 293
    assert "delete counter inet meridio-lb tgt-5001" in commands


def test_a_flow_change_rewrites_only_the_chains_of_its_vips() -> None:
    flows = samples.flows()
    sctp = dataclasses.replace(flows[2], destination_ports=())
    commands = plan.plan(plan.Installed.of(render()), render(flow_set=flows[:2] + (sctp,)))
    assert {c for c in commands if c.startswith("flush")} == {"flush chain inet meridio-lb vip-2001.db8.f..10/128"}
    assert all(c.startswith(("flush", "add rule inet meridio-lb vip-2001.db8.f..10/128 ")) for c in commands)


def test_a_removed_stream_is_unreferenced_before_its_map_and_chains_are_deleted() -> None:
    flows_a_only = samples.flows()[:1]
    before = render()
    after = ruleset.render(dataclasses.replace(samples.config(flow_set=flows_a_only),
                                               streams=samples.config().streams[:1]))
    commands = plan.plan(plan.Installed.of(before), after)
    first_delete = min(i for i, c in enumerate(commands) if c.startswith("delete map") or c.startswith("delete chain"))
    flushes = [i for i, c in enumerate(commands) if c.startswith("flush chain")]
    assert flushes and max(flushes) < first_delete
    assert "delete map inet meridio-lb s-stream-b" in commands
    assert "delete chain inet meridio-lb s-stream-b-h4" in commands
    map_delete = commands.index("delete map inet meridio-lb s-stream-b")
    assert map_delete < commands.index("delete chain inet meridio-lb s-stream-b-h4")


def test_chains_are_declared_before_the_maps_whose_elements_name_them() -> None:
    commands = plan.plan(plan.Installed(), render())
    chain = commands.index("add chain inet meridio-lb vip-203.0.113.10/32")
    vmap = next(i for i, c in enumerate(commands) if c.startswith("add map inet meridio-lb dispatch4"))
    element = next(i for i, c in enumerate(commands) if c.startswith("add element inet meridio-lb dispatch4"))
    rule = next(i for i, c in enumerate(commands) if c.startswith("add rule"))
    assert commands[0] == "add table inet meridio-lb"
    assert chain < vmap < element < rule


def test_a_stream_map_declared_differently_is_recreated_with_the_chains_using_it() -> None:
    before = render()
    moved = dataclasses.replace(samples.config(), streams=(
        dataclasses.replace(samples.config().streams[0], offset=6000), samples.config().streams[1]))
    commands = plan.plan(plan.Installed.of(before), ruleset.render(moved))
    assert "delete map inet meridio-lb s-stream-a" in commands
    assert "flush chain inet meridio-lb s-stream-a-h4" in commands
    assert commands.index("flush chain inet meridio-lb s-stream-a-h4") < commands.index(
        "delete map inet meridio-lb s-stream-a")
    assert any(c.startswith("add rule inet meridio-lb s-stream-a-h4 ") for c in commands)


# --- reading the kernel's listing --------------------------------------------------------------

def listing_of(rs: Ruleset, *, foreign_rule_in: str | None = None) -> list[dict[str, Any]]:
    """The objects ``nft -j list table`` returns for ``rs`` (shapes as nft 1.0.6 prints them)."""
    def elem(text: str) -> Any:
        if "-" in text:
            first, last = text.split("-")
            return {"range": [first, last]}
        net = ipaddress.ip_network(text)
        if net.prefixlen == net.max_prefixlen:
            return str(net.network_address)
        return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}

    def value(text: str) -> Any:
        if text.startswith(("goto ", "jump ")):
            verdict, target = text.split()
            return {verdict: {"target": target}}
        return text.strip('"')

    out: list[dict[str, Any]] = [{"table": {"family": "inet", "name": "meridio-lb"}}]
    out += [{"counter": {"name": n, "packets": 0, "bytes": 0}} for n in sorted(rs.counters)]
    for s in rs.sets.values():
        out.append({"set": {"name": s.name, "comment": s.comment, "elem": [elem(e) for e in s.elements]}})
    for m in rs.maps.values():
        keys = [int(k) if k.isdigit() else elem(k) for k in m.elements]
        out.append({"map": {"name": m.name, "type": "mark" if "mark" in m.decl else "ipv4_addr", "map": "verdict",
                            "comment": m.comment, "elem": [[k, value(v)] for k, v in zip(keys, m.elements.values())]}})
    for b in rs.buckets.values():
        out.append({"map": {"name": b.name, "type": "integer", "map": "mark", "comment": b.comment,
                            "elem": [[i, mark] for i, mark in enumerate(b.marks) if mark]}})
    for c in rs.chains.values():
        hook = ({"type": c.hook.type, "hook": c.hook.hook, "prio": c.hook.priority, "policy": c.hook.policy}
                if c.hook else {})
        out.append({"chain": {"name": c.name, **hook}})
        comments = [f"{c.fingerprint}:{i}" for i in range(len(c.rules))]
        if c.name == foreign_rule_in:
            comments.insert(1, None)  # type: ignore[arg-type]
        out += [{"rule": {"chain": c.name, **({"comment": cm} if cm else {})}} for cm in comments]
    return out


def test_what_was_installed_is_recognised_after_a_restart() -> None:
    desired = render()
    assert plan.plan(plan.installed_from_json(listing_of(desired)), desired) == []


def test_a_chain_someone_else_added_a_rule_to_is_rewritten() -> None:
    desired = render()
    commands = plan.plan(plan.installed_from_json(listing_of(desired, foreign_rule_in="classify")), desired)
    assert commands[0] == "flush chain inet meridio-lb classify"
    assert all("classify" in c for c in commands)


def test_stream_parameters_are_read_back_from_the_map_comment() -> None:
    comment = render().buckets["s-stream-b"].comment
    assert plan.stream_params(comment) == {"offset": 5003, "max-targets": 3, "m": 293}
