"""`python -m devstack run`: the gateway on local stores kept in ./.run (`make run`;
devstack/local_run.py).

`python -m devstack [--pgbouncer] [--password SECRET] [--ha] [-- COMMAND ...]`: start
throw-away stores (those no *_URL in the environment names) and print their settings
until Ctrl-C; or, given a command, run it with those settings in its environment and
stop the stores when it ends, exiting with its code.

--pgbouncer: DATABASE_URL is a PgBouncer in transaction pooling mode in front of the
PostgreSQL (and PG_POOLER=transaction is set with it). --password: the PostgreSQL asks
for this password, as most servers do (trust otherwise). --ha: the high-availability
topology instead (devstack/ha: etcd x3, Patroni with 2 PostgreSQL nodes, Redis primary
+ replica + 3 Sentinels, FerretDB on the Patroni cluster); it sets DATABASE_URL,
MONGO_URL, REDIS_SENTINELS, REDIS_SENTINEL_MASTER and REDIS_URL (the master at start,
for tools that read the saga log directly), whatever the environment says.

    python -m devstack --password ci -- python -m pytest    # the suite on named stores
"""

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys

from devstack.ha.topology import HaStack
from devstack.pgbouncer import running_pgbouncer
from devstack.processes import dies_with_parent
from devstack.stack import running_stack


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pgbouncer", action="store_true", help="PostgreSQL behind PgBouncer")
    parser.add_argument("--password", help="the PostgreSQL asks for this password")
    parser.add_argument("--ha", action="store_true", help="the high-availability topology")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="run this, then stop")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.ha and (args.pgbouncer or args.password):
        parser.error("--ha starts its own PostgreSQL cluster: no --pgbouncer, no --password")
    with contextlib.ExitStack() as stack:
        notes: list[str] = []
        if args.ha:
            ha = stack.enter_context(HaStack())
            settings = ha.urls.as_env()
            notes.append(f"# the HA stack's data and logs: {ha.root}")
        else:
            urls = stack.enter_context(running_stack(password=args.password))
            settings = urls.as_env()
        if args.pgbouncer:
            bouncer = stack.enter_context(running_pgbouncer(settings["DATABASE_URL"]))
            settings |= {"DATABASE_URL": bouncer.url, "PG_POOLER": "transaction"}
        if command:
            # Ctrl-C reaches the command (our foreground group); the stores stop after it.
            environ = os.environ | settings
            ran = subprocess.run(command, env=environ, preexec_fn=dies_with_parent(signal.SIGTERM))
            return ran.returncode
        for name, value in settings.items():
            # Quoted for a shell when need be: the HA DATABASE_URL holds a `?`.
            print(f"export {name}={shlex.quote(value)}")
        for note in notes:
            print(note)
        print("# stores are up; Ctrl-C stops them and deletes their data", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"]:  # before the mask below: it counts its own Ctrl-Cs
        from devstack.local_run import main as run_locally

        sys.exit(run_locally(sys.argv[2:]))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
