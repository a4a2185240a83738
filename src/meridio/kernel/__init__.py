"""The only code that touches the host: network namespaces, netlink, nftables, sysctls, processes."""
