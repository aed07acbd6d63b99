"""The set of stores a test run or a local run needs, started or taken from the environment."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devstack.servers import Server, start_ferretdb, start_mongod, start_postgres, start_redis

SERVICE_DATABASE = "coupons"


@dataclass(frozen=True)
class StackUrls:
    database_url: str
    mongo_url: str
    redis_url: str
    mongo_flavour: str  # "ferretdb", "mongod" or "external": tests skip what a flavour lacks

    def as_env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "MONGO_URL": self.mongo_url,
            "REDIS_URL": self.redis_url,
        }


def _mongo_choice() -> str:
    """`COUPON_TEST_MONGO=ferretdb|mongod` forces one; by default a `mongod` on PATH wins."""
    forced = os.environ.get("COUPON_TEST_MONGO", "")
    if forced in ("ferretdb", "mongod"):
        return forced
    return "mongod" if shutil.which("mongod") else "ferretdb"


@contextlib.contextmanager
def running_stack(
    environ: dict[str, str] | None = None, *, durable: bool = False
) -> Iterator[StackUrls]:
    """Yield store URLs: those given in the environment, the rest started here and stopped after.

    `durable`: a PostgreSQL started here keeps every commit it acknowledged through a
    crash (see `start_postgres`); by default it does not, for speed.
    """
    env = os.environ if environ is None else environ
    root = Path(tempfile.mkdtemp(prefix="coupon-stack-"))
    root.chmod(0o755)  # the postgres user must reach its data dir inside
    servers: list[Server] = []
    try:
        database_url = env.get("DATABASE_URL")
        mongo_url = env.get("MONGO_URL")
        flavour = "external"
        postgres: Server | None = None
        if not database_url or (not mongo_url and _mongo_choice() == "ferretdb"):
            postgres = start_postgres(
                root, databases=(SERVICE_DATABASE, "ferretdb"), durable=durable
            )
            servers.append(postgres)
        if not database_url:
            assert postgres is not None
            database_url = f"{postgres.url}/{SERVICE_DATABASE}"
        if not mongo_url:
            flavour = _mongo_choice()
            if flavour == "mongod":
                mongo = start_mongod(root)
            else:
                assert postgres is not None
                mongo = start_ferretdb(root, postgres.url)
            servers.append(mongo)
            mongo_url = mongo.url
        redis_url = env.get("REDIS_URL")
        if not redis_url:
            redis = start_redis(root)
            servers.append(redis)
            redis_url = redis.url
        yield StackUrls(database_url, mongo_url, redis_url, flavour)
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
