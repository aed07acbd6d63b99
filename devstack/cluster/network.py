"""Hosts as network namespaces on one bridge, and partitions as nft drop rules.

Every name starts with the run's prefix (`cl` and six hex digits), so parallel runs never
touch each other's namespaces or links, and a leftover sweep finds a dead run's by name.
The bridge has the subnet's first address on the machine's side: there the stores are
forwarded and HAProxy listens. A partition is a table of drop rules inside the host's own
namespace, so it cuts that host alone, both ways, open connections included.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

SUBNETS = "10.231"  # 10.231.N.0/24: used only inside namespaces made here
_PARTITION_TABLE = "partition"


class NetworkError(RuntimeError):
    pass


def ip(*argv: str) -> str:
    return _run(["ip", *argv])


def _run(argv: list[str], stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NetworkError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def why_not_allowed() -> str | None:
    """Why this process cannot make hosts here (None: it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (run the cluster tier as root)"
    for binary, package in (("ip", "iproute2"), ("nft", "nftables"), ("haproxy", "haproxy")):
        if shutil.which(binary) is None:
            return f"{binary} not installed (Debian package {package}): run `make deps`"
    probe = f"clprobe{uuid.uuid4().hex[:6]}"
    try:
        ip("netns", "add", probe)
    except NetworkError as error:
        return f"network namespaces are not permitted here: {error}"
    ip("netns", "delete", probe)
    return None


def free_subnet() -> str:
    """A 10.231.N prefix no interface of this machine has an address in."""
    taken = set(re.findall(rf"inet {re.escape(SUBNETS)}\.(\d+)\.", ip("-o", "-4", "addr")))
    free = [n for n in range(256) if str(n) not in taken]
    if not free:
        raise NetworkError(f"no free {SUBNETS}.N.0/24 subnet left")
    return f"{SUBNETS}.{random.choice(free)}"


@dataclass(frozen=True)
class Bridge:
    name: str
    address: str  # the machine's side: stores and HAProxy

    @classmethod
    def create(cls, prefix: str, subnet: str) -> Bridge:
        bridge = cls(f"{prefix}br", f"{subnet}.1")
        ip("link", "add", bridge.name, "type", "bridge")
        ip("addr", "add", f"{bridge.address}/24", "dev", bridge.name)
        ip("link", "set", bridge.name, "up")
        return bridge


@dataclass(frozen=True)
class NetHost:
    namespace: str
    address: str

    @classmethod
    def create(cls, prefix: str, name: str, address: str, bridge: Bridge) -> NetHost:
        host = cls(f"{prefix}-{name}", address)
        outside, inside = f"{prefix}{name}h", f"{prefix}{name}n"
        ip("netns", "add", host.namespace)
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", outside, "master", bridge.name, "up")
        ip("link", "set", inside, "netns", host.namespace)
        ip("-n", host.namespace, "addr", "add", f"{address}/24", "dev", inside)
        ip("-n", host.namespace, "link", "set", inside, "up")
        ip("-n", host.namespace, "link", "set", "lo", "up")
        return host

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside the host (ip execs it: the pid is the command's own)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def pids(self) -> set[int]:
        """Every process running inside the host."""
        return {int(pid) for pid in ip("netns", "pids", self.namespace).split()}

    def cut_from(self, address: str, ports: Iterable[int]) -> None:
        """Drop every packet between this host and `address`:`ports`, both ways."""
        wanted = ", ".join(str(port) for port in sorted(ports))
        self._drop(
            f"ip daddr {address} tcp dport {{ {wanted} }} drop",
            f"ip saddr {address} tcp sport {{ {wanted} }} drop",
        )

    def isolate(self) -> None:
        """Drop every packet in or out but loopback's: the host is off the network."""
        self._drop('oifname != "lo" drop', 'iifname != "lo" drop')

    def heal(self) -> None:
        """Take every partition rule away."""
        self._nft(f"add table inet {_PARTITION_TABLE}\ndelete table inet {_PARTITION_TABLE}\n")

    def _drop(self, outgoing: str, incoming: str) -> None:
        self._nft(
            f"table inet {_PARTITION_TABLE} {{\n"
            f"  chain out {{ type filter hook output priority 0; policy accept; {outgoing}; }}\n"
            f"  chain in {{ type filter hook input priority 0; policy accept; {incoming}; }}\n"
            "}\n"
        )

    def _nft(self, script: str) -> None:
        _run(["ip", "netns", "exec", self.namespace, "nft", "-f", "-"], stdin=script)


def namespaces(prefix: str) -> list[str]:
    listed = ip("netns", "list")
    return [line.split()[0] for line in listed.splitlines() if line.startswith(f"{prefix}-")]


def links(prefix: str) -> list[str]:
    names = re.findall(r"^\d+: ([^:@]+)[:@]", ip("-o", "link"), re.MULTILINE)
    return [name for name in names if name.startswith(prefix)]


def remove(prefix: str) -> None:
    """Delete the namespaces (their processes killed first) and links named `prefix*`."""
    for namespace in namespaces(prefix):
        pids = ip("netns", "pids", namespace).split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        ip("netns", "delete", namespace)
    for link in links(prefix):
        with contextlib.suppress(NetworkError):  # a veth goes with its peer's namespace
            ip("link", "delete", link)
