"""The golden nftables files of tests/unit/test_lb_ruleset.py, checked and loaded by the real ``nft``.

Real: the ``nft`` binary (1.0.6) and the kernel, in a throwaway namespace.
"""
from __future__ import annotations

from typing import Any

from meridio.kernel import netns as netnsmod
from meridio.kernel import nftables
from meridio.loadbalancer import plan, ruleset
from tests.unit import lb_samples as samples


def nft(ns: str, *args: str) -> Any:
    return netnsmod.run(ns, ["nft", *args], check=False)


def test_the_golden_rulesets_pass_nft_check_load_and_list_back(netns: Any) -> None:
    ns = netns("golden")
    full, change = samples.GOLDEN / "lb_full.nft", samples.GOLDEN / "lb_change.nft"
    for step in (full, change):
        checked = nft(ns, "-c", "-f", str(step))
        assert checked.returncode == 0, checked.stderr
        loaded = nft(ns, "-f", str(step))
        assert loaded.returncode == 0, loaded.stderr
    listed = nft(ns, "list", "ruleset")
    assert listed.returncode == 0 and "typeof numgen inc mod 293 : meta mark" in listed.stdout
    with nftables.Nft(netns=ns) as ctx:
        installed = plan.installed_from_json(ctx.list_json("table inet meridio-lb"))
    desired = ruleset.render(samples.config(targets_a=(1, 2, 3), flow_set=samples.flows()[:2]))
    assert plan.plan(installed, desired) == []
