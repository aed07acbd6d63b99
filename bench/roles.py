"""Which processes play which role in a run, found robustly or named "not found".

The gateway is the process tree bench started, or, for a gateway given by URL, whatever
listens on its port (the workers) with their parent when it is the same program forked.
Each store is whatever listens on its URL's port, with its descendants. FerretDB's
PostgreSQL backends (those of its database) count as MongoDB's, not PostgreSQL's.
Nothing is found by name alone: on a shared machine other sessions run the same programs.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from bench.cpu import (
    Part,
    Role,
    command_line,
    listeners,
    not_found,
    processes,
    url_port,
    url_ports,
)

ROLE_NAMES = ("load_generator", "gateway", "mongodb", "postgresql", "redis")


def load_generator() -> Role:
    return Role("load_generator", (Part(frozenset({os.getpid()})),), "bench's own process", True)


def gateway_started(pid: int, label: str = "gateway") -> Role:
    return Role("gateway", (Part(frozenset({pid})),), f"the {label} bench started (pid {pid})")


def gateway_at(base_url: str) -> Role:
    port = url_port(base_url, 80)
    if port is None:
        return not_found("gateway", f"no port in {base_url}")
    workers = listeners(port)
    if not workers:
        return not_found("gateway", f"nothing of this user listens on port {port}")
    table = processes()
    parents = set()
    for pid in workers:  # forked workers: their parent runs the same command line
        parent = table[pid].ppid if pid in table else 0
        if parent > 1 and command_line(parent) == command_line(pid):
            parents.add(parent)
    found = _described(workers, port)
    if parents:
        found += f", with their parent (pids {sorted(parents)})"
    return Role("gateway", (Part(frozenset(workers | parents)),), found)


def _store(name: str, url: str | None, default_port: int, option: str) -> tuple[Role, set[int]]:
    if not url:
        return not_found(name, f"no {option}"), set()
    # Every host's server, where the URL names several (a primary and its standbys: the
    # standbys' replay is the stores' cost too).
    ports = url_ports(url, default_port)
    found = {pid for port in ports for pid in listeners(port)}
    shown = ", ".join(map(str, ports))
    if not found:
        return not_found(name, f"nothing of this user listens on port {shown}"), set()
    return Role(name, (Part(frozenset(found)),), _described(found, shown)), found


def _described(pids: set[int], port: int | str) -> str:
    table = processes()
    names = sorted({table[pid].name for pid in pids if pid in table})
    return f"{', '.join(names)} listening on port {port} (pids {sorted(pids)}) and its children"


def _ferretdb_postgres(pids: set[int]) -> Part | None:
    """The PostgreSQL backends FerretDB works through, from its `--postgresql-url`."""
    for pid in pids:
        for argument in command_line(pid):
            if argument.startswith("--postgresql-url="):
                url = argument.split("=", 1)[1]
                database = urlsplit(url).path.strip("/")
                postmasters = {pid for port in url_ports(url, 5432) for pid in listeners(port)}
                if postmasters and database:
                    return Part(frozenset(postmasters), backend_database=database)
    return None


def stack_roles(
    gateway: Role,
    database_url: str | None,
    mongo_url: str | None,
    redis_url: str | None,
) -> list[Role]:
    """Every role, in the order processes are claimed (FerretDB's backends before
    PostgreSQL's own)."""
    postgresql, _ = _store("postgresql", database_url, 5432, "--database-url")
    mongodb, mongo_pids = _store("mongodb", mongo_url, 27017, "--mongo-url")
    backends = _ferretdb_postgres(mongo_pids)
    if backends is not None:
        mongodb = Role(
            "mongodb",
            (*mongodb.parts, backends),
            f"{mongodb.found}, and the PostgreSQL backends of its database "
            f"{backends.backend_database!r}",
        )
    redis, _ = _store("redis", redis_url, 6379, "--redis-url")
    return [load_generator(), gateway, mongodb, postgresql, redis]
