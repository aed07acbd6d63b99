"""Locate FerretDB v1.24.2, building it once from the Go module proxy into a cache dir."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from devstack.go_toolchain import NoToolchain, cache_root, go_binary

FERRETDB_VERSION = "v1.24.2"
# The Go module that builds it lives in the source tree, not in an installed package: an
# install made from a wheel finds the binary a checkout built (the cache) or FERRETDB_BIN.
_TOOL_MODULE = Path(__file__).resolve().parent.parent / "tools" / "ferretdb"


def cache_dir() -> Path:
    return cache_root() / f"ferretdb-{FERRETDB_VERSION}"


def ferretdb_binary() -> Path:
    """`FERRETDB_BIN` if set, else the cached build, else a fresh build (a minute or two)."""
    if configured := os.environ.get("FERRETDB_BIN"):
        return Path(configured)
    binary = cache_dir() / "ferretdb"
    if not binary.exists():
        build_ferretdb(binary.parent)
    return binary


def build_ferretdb(target_dir: Path) -> None:
    if not (_TOOL_MODULE / "go.mod").exists():
        raise SystemExit(
            f"FerretDB {FERRETDB_VERSION} is not built yet, and this installed copy has no "
            "source to build it from: run scripts/install-deps in a checkout once (it "
            f"caches the binary in {cache_dir()}), or set FERRETDB_BIN."
        )
    try:
        go = go_binary()
    except NoToolchain as error:
        raise SystemExit(f"FerretDB {FERRETDB_VERSION} cannot be built: {error}") from error
    print(
        f"ferretdb: building FerretDB {FERRETDB_VERSION} with {go} into {target_dir} "
        "(a minute or two, once) ...",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    target_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(go), "install", "."],
        cwd=_TOOL_MODULE,
        check=True,
        env={**os.environ, "GOBIN": str(target_dir), "GOFLAGS": "-mod=mod"},
    )
    print(f"ferretdb: built in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    print(ferretdb_binary())
