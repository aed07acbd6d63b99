"""The cluster as one context manager: N gateway hosts, HAProxy in front, the stores
forwarded onto the bridge.

    with Cluster(hosts=3, store_ports=[5432, 27017, 6379]) as cluster:
        url = cluster.reach("postgresql://postgres@127.0.0.1:5432/coupons")
        cluster.start_gateways(env)       # the settings, with URLs from `reach`
        cluster.lb_url                    # HAProxy: where a sale's clients go
        cluster.gateways[0].net.cut_from(cluster.bridge.address, [pg_front_port])

Everything it made is removed on the way out, whatever the way out; a dead run's
leftovers are removed on the way in (leftovers.py). Processes die with the thread that
started them (PR_SET_PDEATHSIG): start and restart gateways from the thread that entered.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

from devstack.cluster import cgroups, haproxy, leftovers, network
from devstack.cluster.gateway_host import GatewayHost
from devstack.ha.waiting import poll
from devstack.processes import free_port


class Cluster:
    """`cpus_per_host`: each gateway host held to that many CPUs (cgroup v1 `cpu`);
    None, or no writable controller: unbounded."""

    def __init__(
        self, *, hosts: int, store_ports: list[int], cpus_per_host: float | None = None
    ) -> None:
        self._hosts, self._store_ports, self._cpus = hosts, store_ports, cpus_per_host
        self.root: Path | None = None
        self.bridge: network.Bridge | None = None
        self.gateways: list[GatewayHost] = []
        self.fronts: dict[int, int] = {}  # store port on loopback -> its port on the bridge
        self.lb_url = ""
        self._haproxy: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Cluster:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def prefix(self) -> str:
        assert self.root is not None, "the cluster is not started"
        return leftovers.prefix_of(self.root)

    def _start(self) -> None:
        self.root = root = leftovers.new_root()
        subnet = network.free_subnet()
        self.bridge = bridge = network.Bridge.create(self.prefix, subnet)
        cpus = self._cpus if cgroups.available() else None
        for n in range(1, self._hosts + 1):
            name = f"g{n}"
            net = network.NetHost.create(self.prefix, name, f"{subnet}.{10 + n}", bridge)
            group = None if cpus is None else cgroups.create(f"{self.prefix}-{name}", cpus)
            self.gateways.append(GatewayHost(name, net, root / f"{name}.log", group))
        self.fronts = {port: free_port() for port in self._store_ports}
        forwards = [
            haproxy.Forward(f"store{port}", (bridge.address, front), ("127.0.0.1", port))
            for port, front in self.fronts.items()
        ]
        lb_port = free_port()
        gateways = [gateway.net.address for gateway in self.gateways]
        self._haproxy = haproxy.start(root, lb_port, gateways, forwards)
        self.lb_url = f"http://127.0.0.1:{lb_port}"

    def reach(self, url: str) -> str:
        """`url` (a store on loopback) as a gateway host reaches it: through the bridge."""
        assert self.bridge is not None, "the cluster is not started"
        parts = urlsplit(url)
        front = self.fronts[parts.port or 0]
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}{self.bridge.address}:{front}"))

    def start_gateways(self, env: dict[str, str], workers: int = 1) -> None:
        """Start every host's gateway at once, then wait for each to be healthy."""
        for gateway in self.gateways:
            gateway.start(env, workers)
        for gateway in self.gateways:
            gateway.wait_healthy()
        self.wait_in_rotation(*self.gateways)

    def in_rotation(self) -> set[str]:
        """The names of the gateway hosts HAProxy sends requests to now."""
        assert self.root is not None, "the cluster is not started"
        return haproxy.gateways_up(self.root)

    def wait_in_rotation(self, *gateways: GatewayHost) -> None:
        """Poll until HAProxy sends requests to each of `gateways`."""
        names = {gateway.name for gateway in gateways}
        poll(f"HAProxy taking {sorted(names)}", lambda: names <= self.in_rotation())

    def close(self) -> None:
        try:
            for gateway in self.gateways:
                with contextlib.suppress(OSError, network.NetworkError):
                    gateway.stop()
            if self._haproxy is not None:
                self._haproxy.kill()
                self._haproxy.wait()
        finally:
            if self.root is not None:
                leftovers.end(self.root)
