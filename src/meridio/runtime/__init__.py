"""Runtimes that realise Meridio resources as running components.

:mod:`meridio.runtime.reconcile` is the pure core shared by every runtime (resources in, desired
workloads out); :mod:`meridio.runtime.local` realises the workloads on one Linux host as network
namespaces and supervised processes.
"""
