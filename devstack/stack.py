"""The set of stores a test run or a local run needs, started or taken from the environment."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from devstack.homes import KeptHome, ThrowAwayHome
from devstack.servers import Server, start_ferretdb, start_mongod, start_postgres, start_redis

SERVICE_DATABASE = "coupons"


@dataclass(frozen=True)
class StackUrls:
    database_url: str
    mongo_url: str
    redis_url: str
    mongo_flavour: str  # "ferretdb", "mongod" or "external": tests skip what a flavour lacks
    started: tuple[str, ...] = ()  # the servers started here, in start order

    def as_env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "MONGO_URL": self.mongo_url,
            "REDIS_URL": self.redis_url,
        }


def _mongo_choice(home: ThrowAwayHome | KeptHome) -> str:
    """`COUPON_TEST_MONGO=ferretdb|mongod` forces one; by default a `mongod` on PATH wins.

    Kept data stays with the flavour that wrote it.
    """
    if home.keep and (home.root / "mongod").is_dir():
        return "mongod"
    if home.keep and (home.root / "postgres").is_dir():
        return "ferretdb"
    forced = os.environ.get("COUPON_TEST_MONGO", "")
    if forced in ("ferretdb", "mongod"):
        return forced
    return "mongod" if shutil.which("mongod") else "ferretdb"


@contextlib.contextmanager
def running_stack(
    environ: Mapping[str, str] | None = None,
    home: ThrowAwayHome | KeptHome | None = None,
    *,
    durable: bool = False,
    password: str | None = None,
    statement_stats: bool = False,
) -> Iterator[StackUrls]:
    """Yield store URLs: those given in `environ`, the rest started here and stopped after.

    `home` (default: a temp dir, deleted after) holds the started servers' data and ports.
    `durable`: a PostgreSQL started here keeps every commit it acknowledged through a
    crash (see `start_postgres`); by default it does not, for speed. `password`: a
    PostgreSQL started here asks for it (the URLs carry it). `statement_stats`: a
    PostgreSQL started here preloads pg_stat_statements.
    """
    env = os.environ if environ is None else environ
    home = home or ThrowAwayHome()
    servers: list[Server] = []
    try:
        database_url = env.get("DATABASE_URL")
        mongo_url = env.get("MONGO_URL")
        flavour = "external" if mongo_url else _mongo_choice(home)
        postgres: Server | None = None
        if not database_url or flavour == "ferretdb":
            postgres = start_postgres(
                home.root,
                databases=(SERVICE_DATABASE, "ferretdb"),
                port=home.port("postgres"),
                keep=home.keep,
                durable=durable,
                password=password,
                statement_stats=statement_stats,
            )
            servers.append(postgres)
        if not database_url:
            assert postgres is not None
            database_url = f"{postgres.url}/{SERVICE_DATABASE}"
        if not mongo_url:
            if flavour == "mongod":
                mongo = start_mongod(home.root, port=home.port("mongod"))
            else:
                assert postgres is not None
                mongo = start_ferretdb(home.root, postgres.url, port=home.port("ferretdb"))
            servers.append(mongo)
            mongo_url = mongo.url
        redis_url = env.get("REDIS_URL")
        if not redis_url:
            redis = start_redis(home.root, port=home.port("redis"), keep=home.keep)
            servers.append(redis)
            redis_url = redis.url
        started = tuple(server.name for server in servers)
        yield StackUrls(database_url, mongo_url, redis_url, flavour, started)
    finally:
        for server in reversed(servers):
            server.stop()
        home.close()
