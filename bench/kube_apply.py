#!/usr/bin/env python3
"""How long from applying a trench's CRs to every object the operator makes for it existing, against
the real kube-apiserver + kine + kube-controller-manager of the kube test tier (built by
scripts/kube-test-servers), with the operator running in this process under its own ServiceAccount.

    .venv/bin/python bench/kube_apply.py [--rounds 20]

Each round: a fresh namespace with the install's RBAC, the e2e trench-a CRs created one by one (as
`kubectl apply -f` does), then the clock stops when the ConfigMap, both StatefulSets, both Services,
both FE+LB Deployments and PDBs and both proxy DaemonSets exist. Also reported: the control plane's
start time (warm sqlite) and the build cache state. Prints a table, writes bench/results/kube_apply.json.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from meridio.api import kubeapi, resources  # noqa: E402
from meridio.runtime.kubernetes import crds  # noqa: E402
from tests.kube.test_operator import RunningOperator, e2e_docs, service_account_token  # noqa: E402
from tests.support.kube import ControlPlane, build_servers  # noqa: E402

WANT = ["api/v1/namespaces/{ns}/configmaps/meridio-configuration-trench-a",
        "apis/apps/v1/namespaces/{ns}/statefulsets/nsp-trench-a", "apis/apps/v1/namespaces/{ns}/statefulsets/ipam-trench-a",
        "api/v1/namespaces/{ns}/services/nsp-service-trench-a", "api/v1/namespaces/{ns}/services/ipam-service-trench-a",
        "apis/apps/v1/namespaces/{ns}/deployments/stateless-lb-frontend-attractor-a-1",
        "apis/apps/v1/namespaces/{ns}/deployments/stateless-lb-frontend-attractor-a-2",
        "apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/pdb-attractor-a-1",
        "apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/pdb-attractor-a-2",
        "apis/apps/v1/namespaces/{ns}/daemonsets/proxy-conduit-a-1", "apis/apps/v1/namespaces/{ns}/daemonsets/proxy-conduit-a-2"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    t0 = time.monotonic()
    bindir = build_servers()
    cached_s = time.monotonic() - t0
    cp = ControlPlane(bindir)
    t0 = time.monotonic()
    cp.start()
    start_s = time.monotonic() - t0
    try:
        assert cp.admin is not None
        for crd in crds.crds():
            cp.admin.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        time.sleep(2)
        docs = [d for d in e2e_docs() if d["kind"] == "Trench" and d["metadata"]["name"] == "trench-a"
                or d["metadata"].get("labels", {}).get("trench") == "trench-a"]
        took: list[float] = []
        for _ in range(args.rounds):
            ns = cp.namespace("bench")
            token = service_account_token(cp, ns)
            running = RunningOperator(kubeapi.Credentials(cp.admin.server, cp.admin.ca_file, token=token,
                                                          namespace=ns), ns)
            try:
                t0 = time.monotonic()
                for doc in docs:
                    body = {**doc, "metadata": {**doc["metadata"], "namespace": ns}}
                    cp.admin.create(f"/apis/{resources.GROUP}/v1/namespaces/{ns}/{crds.PLURALS[doc['kind']]}", body)
                pending = [p.format(ns=ns) for p in WANT]
                while pending:
                    try:
                        cp.admin.get("/" + pending[0])
                        pending.pop(0)
                    except Exception:  # noqa: BLE001 - not there yet
                        time.sleep(0.02)
                    if time.monotonic() - t0 > 120:
                        raise RuntimeError(f"still missing after 120 s: {pending}")
                took.append(time.monotonic() - t0)
            finally:
                running.stop()
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rounds": args.rounds,
            "objects_per_round": len(WANT), "crs_per_round": len(docs),
            "apply_to_all_objects_s": {"p50": statistics.median(took), "p99": percentile(took, 0.99),
                                       "min": min(took), "max": max(took)},
            "control_plane_start_s": start_s, "servers_lookup_cached_s": cached_s,
        }
    finally:
        cp.stop()
    out = ROOT / "bench" / "results" / "kube_apply.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    a = result["apply_to_all_objects_s"]
    print(f"| CR apply ({len(docs)} CRs) → all {len(WANT)} objects | p50 {a['p50']:.2f} s | p99 {a['p99']:.2f} s |")
    print(f"| control plane start (warm) | {start_s:.1f} s | test servers lookup (cached) | {cached_s:.2f} s |")

    return 0


if __name__ == "__main__":
    sys.exit(main())
