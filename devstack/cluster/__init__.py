"""Several gateway hosts on one machine: network namespaces on a bridge, HAProxy in
front, the stores reached through the bridge, and faults a real network has (a host cut
off from one store, paused, killed). See docs/CLUSTER.md."""
