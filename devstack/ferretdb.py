"""Locate FerretDB v1.24.2, building it once from the Go module proxy into a cache dir."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

FERRETDB_VERSION = "v1.24.2"
# The Go module that builds it lives in the source tree, not in an installed package: an
# install made from a wheel finds the binary a checkout built (the cache) or FERRETDB_BIN.
_TOOL_MODULE = Path(__file__).resolve().parent.parent / "tools" / "ferretdb"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "coupon-service" / f"ferretdb-{FERRETDB_VERSION}"


def ferretdb_binary() -> Path:
    """`FERRETDB_BIN` if set, else the cached build, else a fresh build (about a minute)."""
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
    go = shutil.which("go") or "/usr/local/go/bin/go"
    target_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [go, "install", "."],
        cwd=_TOOL_MODULE,
        check=True,
        env={**os.environ, "GOBIN": str(target_dir), "GOFLAGS": "-mod=mod"},
    )


if __name__ == "__main__":
    print(ferretdb_binary())
