"""The stateless load balancer: Maglev tables and nftables rulesets computed in Python, forwarding in the kernel.

Pure core: :mod:`maglev`, :mod:`offsets`, :mod:`flows`, :mod:`ruleset`, :mod:`plan`, :mod:`availability`.
Adapters (the only modules that touch the host): :mod:`kernelstate`, :mod:`routing`. Daemon: :mod:`app`.
"""
