"""`python -m devstack.cluster [--hosts N] [--cpus-per-host Q] [--workers W] [-- COMMAND ...]`:
throw-away stores (those no *_URL in the environment names), N gateway hosts in network
namespaces (each held to Q CPUs, cgroup v1), HAProxy in front; print the settings until
Ctrl-C, or run COMMAND with them in its environment (BASE_URL: HAProxy) and tear it all
down when it ends, exiting with its code. Root only.

    python -m devstack.cluster --hosts 4 --cpus-per-host 0.25 -- \\
        sh -c 'python -m bench claim-rate --base-url $BASE_URL --database-url $DATABASE_URL \\
               --redis-url $REDIS_URL'
"""

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
from urllib.parse import urlsplit

from devstack.cluster.cluster import Cluster
from devstack.cluster.network import why_not_allowed
from devstack.processes import dies_with_parent
from devstack.stack import running_stack

# PostgreSQL's connections for the gateways together (max_connections 100 leaves room).
PG_CONNECTIONS = 64


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--hosts", type=int, default=3, help="gateway hosts (3)")
    parser.add_argument("--cpus-per-host", type=float, help="each host's CPU quota (none)")
    parser.add_argument("--workers", type=int, default=1, help="gateway workers per host (1)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="run this, then stop")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    reason = why_not_allowed()
    if reason:
        print(f"python -m devstack.cluster: {reason}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        stores = stack.enter_context(running_stack()).as_env()
        ports = [urlsplit(url).port or 0 for url in stores.values()]
        cluster = stack.enter_context(
            Cluster(hosts=args.hosts, store_ports=ports, cpus_per_host=args.cpus_per_host)
        )
        gateways = {name: cluster.reach(url) for name, url in stores.items()}
        gateways |= {
            "PG_MAX_CONNECTIONS": str(max(2, PG_CONNECTIONS // args.hosts)),
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "warning"),
        }
        cluster.start_gateways(gateways, args.workers)
        settings = stores | {"BASE_URL": cluster.lb_url}
        if command:
            ran = subprocess.run(
                command,
                env=os.environ | settings,
                preexec_fn=dies_with_parent(signal.SIGTERM),
                check=False,
            )
            return ran.returncode
        for name, value in settings.items():
            print(f"export {name}={shlex.quote(value)}")
        print(f"# {args.hosts} gateway hosts ({cluster.prefix}); Ctrl-C stops it all", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
