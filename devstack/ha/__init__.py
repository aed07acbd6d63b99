"""The high-availability topology on loopback ports, for `python -m devstack --ha` and
the failover tests: see devstack/ha/topology.py."""
