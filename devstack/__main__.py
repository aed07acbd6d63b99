"""`python -m devstack [--pgbouncer] [--password SECRET] [-- COMMAND ...]`: start
throw-away stores (those no *_URL in the environment names) and print their settings
until Ctrl-C; or, given a command, run it with those settings in its environment and
stop the stores when it ends, exiting with its code.

--pgbouncer: DATABASE_URL is a PgBouncer in transaction pooling mode in front of the
PostgreSQL (and PG_POOLER=transaction is set with it). --password: the PostgreSQL asks
for this password, as most servers do (trust otherwise).

    python -m devstack --password ci -- python -m pytest    # the suite on named stores
"""

import argparse
import contextlib
import os
import signal
import subprocess
import sys

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
    parser.add_argument("command", nargs=argparse.REMAINDER, help="run this, then stop")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    with contextlib.ExitStack() as stack:
        urls = stack.enter_context(running_stack(password=args.password))
        settings = urls.as_env()
        if args.pgbouncer:
            bouncer = stack.enter_context(running_pgbouncer(urls.database_url))
            settings |= {"DATABASE_URL": bouncer.url, "PG_POOLER": "transaction"}
        if command:
            # Ctrl-C reaches the command (our foreground group); the stores stop after it.
            environ = os.environ | settings
            ran = subprocess.run(command, env=environ, preexec_fn=dies_with_parent(signal.SIGTERM))
            return ran.returncode
        for name, value in settings.items():
            print(f"export {name}={value}")
        print("# stores are up; Ctrl-C stops them and deletes their data", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
