"""The local runtime: every pod is a network namespace, every container a supervised process.

``environment`` (what to build), ``topology`` (the external side: segments, gateway routers, traffic
generators), ``supervisor`` (processes), ``pods`` (workloads → namespaces + processes), ``daemon``
(the controller ``meridio up`` starts), ``traffic`` (the mconnect/ctraffic-like client).
"""
