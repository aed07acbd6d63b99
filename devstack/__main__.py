"""`python -m devstack [--pgbouncer]`: start throw-away stores and print their settings
until Ctrl-C. With --pgbouncer, DATABASE_URL is a PgBouncer in transaction pooling mode
in front of the PostgreSQL (and PG_POOLER=transaction is printed with it)."""

import argparse
import contextlib
import signal

from devstack.pgbouncer import running_pgbouncer
from devstack.stack import running_stack


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--pgbouncer", action="store_true", help="PostgreSQL behind PgBouncer")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        urls = stack.enter_context(running_stack())
        settings = urls.as_env()
        if args.pgbouncer:
            bouncer = stack.enter_context(running_pgbouncer(urls.database_url))
            settings |= {"DATABASE_URL": bouncer.url, "PG_POOLER": "transaction"}
        for name, value in settings.items():
            print(f"export {name}={value}")
        print("# stores are up; Ctrl-C stops them and deletes their data", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    main()
