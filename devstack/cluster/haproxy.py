"""HAProxy on the machine's side of the bridge: the load balancer in front of the gateway
hosts, and the TCP forwards through which the hosts reach the stores.

The stores listen on loopback, which a namespace cannot reach; each gets a frontend on
the bridge's address instead, so a host's traffic to a store crosses its own link and
its own nft rules. Idle store connections live for hours (pools): the TCP timeouts are
long. The gateways are checked on `/ready` (all three stores answer), so a host cut off
from a store leaves the rotation as a real load balancer would take it out; HAProxy
retries a request elsewhere only when the connection could not be made (nothing sent).
"""

from __future__ import annotations

import csv
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack.processes import accepts_tcp, spawn, wait_until

GATEWAY_PORT = 8080
# A claim's answer takes at most the retries and admission queue a fault can cost it; a
# request cut off from its gateway past this is answered 504 (its outcome unknown).
SERVER_TIMEOUT_SECONDS = 30
_SOCKET = "haproxy.sock"


@dataclass(frozen=True)
class Forward:
    name: str
    listen: tuple[str, int]
    to: tuple[str, int]


def config(lb_port: int, gateways: list[str], forwards: list[Forward], socket_path: Path) -> str:
    lines = [
        "global",
        "  maxconn 4000",
        f"  stats socket {socket_path} level admin",
        "defaults",
        "  timeout connect 2s",
        "  timeout client 1h",
        "  timeout server 1h",
        "  timeout check 1s",
        "frontend sale",
        "  mode http",
        f"  bind 127.0.0.1:{lb_port}",
        "  default_backend gateways",
        "backend gateways",
        "  mode http",
        "  balance roundrobin",
        f"  timeout server {SERVER_TIMEOUT_SECONDS}s",
        "  retries 2",
        "  option redispatch",
        "  option httpchk GET /ready",
    ]
    lines += [
        f"  server g{n} {address}:{GATEWAY_PORT} check inter 300 fall 2 rise 2 slowstart 3s"
        for n, address in enumerate(gateways, start=1)
    ]
    for forward in forwards:
        lines += [
            f"listen {forward.name}",
            "  mode tcp",
            f"  bind {forward.listen[0]}:{forward.listen[1]}",
            f"  server {forward.name} {forward.to[0]}:{forward.to[1]}",
        ]
    return "\n".join(lines) + "\n"


def start(
    root: Path, lb_port: int, gateways: list[str], forwards: list[Forward]
) -> subprocess.Popen[bytes]:
    """HAProxy in the foreground (killed with its owner), once it accepts on `lb_port`."""
    path = root / "haproxy.cfg"
    path.write_text(config(lb_port, gateways, forwards, root / _SOCKET))
    log = root / "haproxy.log"
    process = spawn("haproxy", ["haproxy", "-db", "-f", str(path)], log, stop_signal=signal.SIGKILL)
    wait_until("haproxy", accepts_tcp(lb_port), process, log)
    return process


def gateways_up(root: Path) -> set[str]:
    """The gateways HAProxy sends requests to now (server names g1, g2, ...)."""
    with socket.socket(socket.AF_UNIX) as stats:
        stats.connect(str(root / _SOCKET))
        stats.sendall(b"show stat\n")
        text = b"".join(iter(lambda: stats.recv(65536), b"")).decode()
    rows = csv.DictReader(text.removeprefix("# ").splitlines())
    return {row["svname"] for row in rows if row["pxname"] == "gateways" and row["status"] == "UP"}
