"""A 3-member etcd cluster on loopback ports: Patroni's distributed configuration store."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from devstack.ha.waiting import poll
from devstack.processes import Server, find, free_port, spawn


@dataclass
class EtcdCluster:
    members: list[Server]
    client_ports: list[int]

    @property
    def hosts(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.client_ports]

    def stop(self) -> None:
        for member in self.members:
            member.stop()


def _healthy(port: int) -> bool:
    """The member answers and sees a leader (etcd's own /health says so)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return bool(json.load(answer).get("health") == "true")
    except (OSError, ValueError):
        return False


def start_etcd(root: Path, *, size: int = 3) -> EtcdCluster:
    """`size` members, each with its data in `root/etcdN`; returns once each is healthy."""
    binary = find("etcd")
    names = [f"etcd{number}" for number in range(1, size + 1)]
    clients = [free_port() for _ in names]
    peers = [free_port() for _ in names]
    pairs = zip(names, peers, strict=True)
    initial = ",".join(f"{name}=http://127.0.0.1:{peer}" for name, peer in pairs)
    cluster = EtcdCluster([], clients)
    try:
        for name, client, peer in zip(names, clients, peers, strict=True):
            argv = [binary, "--name", name, "--data-dir", str(root / name)]
            argv += ["--listen-client-urls", f"http://127.0.0.1:{client}"]
            argv += ["--advertise-client-urls", f"http://127.0.0.1:{client}"]
            argv += ["--listen-peer-urls", f"http://127.0.0.1:{peer}"]
            argv += ["--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}"]
            argv += ["--initial-cluster", initial, "--initial-cluster-state", "new"]
            # A token of this run's own: members of another run can never join this one.
            argv += ["--initial-cluster-token", root.name, "--logger", "zap", "--log-level", "warn"]
            log_path = root / f"{name}.log"
            process = spawn(name, argv, log_path)
            cluster.members.append(Server(name, f"http://127.0.0.1:{client}", process, log_path))
        for member, port in zip(cluster.members, clients, strict=True):
            poll(f"{member.name} healthy", partial(_healthy, port), watch=cluster.members)
    except BaseException:
        cluster.stop()
        raise
    return cluster
