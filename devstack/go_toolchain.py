"""A Go new enough to build FerretDB and actionlint: the one on PATH if it is, else Go
GO_VERSION fetched once from the Go module proxy into the cache, its hash checked first.

The Go module proxy serves every Go release as the module `golang.org/toolchain` (that
is how GOTOOLCHAIN switches Go), so it comes from a package registry like the rest.
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

GO_VERSION = "1.24.13"  # the newest 1.24: tools/ferretdb/go.mod says `go 1.24`
# The go.sum hash (h1:) of golang.org/toolchain v0.0.1-go{GO_VERSION}.linux-{arch}. The Go
# checksum database publishes the same line for each, so anyone can check them there
# (`go mod download -json golang.org/toolchain@v0.0.1-go1.24.13.linux-amd64` prints it
# after checking it) instead of trusting whoever committed them.
TOOLCHAIN_SUMS = {
    "amd64": "h1:5sgfUhn9QCgVl4UYj32GrIYFHI3bi2UX55tNfupXwxc=",
    "arm64": "h1:l0oOtQpOBay3IDfyGSF3ZLivy3x5c1byllrr/QfyDeM=",
}
DEFAULT_PROXY = "https://proxy.golang.org"
_GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_GO_MOD = Path(__file__).resolve().parent.parent / "tools" / "ferretdb" / "go.mod"


class NoToolchain(Exception):
    """No Go is new enough and none could be fetched: the message says what to do."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "coupon-service"


def go_binary() -> Path:
    """A `go` of at least the version tools/ferretdb/go.mod asks for; fetched if need be."""
    required = required_version(_GO_MOD)
    seen = []
    for candidate in (shutil.which("go"), "/usr/local/go/bin/go"):
        if candidate and (found := installed_version(Path(candidate))):
            if found >= required:
                return Path(candidate)
            seen.append(f"{candidate} is {_dotted(found)}")
    home = cache_root() / f"go-{GO_VERSION}"
    if not (home / "bin" / "go").exists():
        arch = _GO_ARCH.get(platform.machine())
        if arch is None:
            raise NoToolchain(f"no Go toolchain is pinned for {platform.machine()}: install Go")
        _progress(
            f"no Go >= {_dotted(required)} here ({', '.join(seen) or 'no go on PATH'}): "
            f"fetching Go {GO_VERSION} (about 80 MB, once) into {home}"
        )
        fetch_toolchain(home, f"v0.0.1-go{GO_VERSION}.linux-{arch}", TOOLCHAIN_SUMS[arch])
    return home / "bin" / "go"


def required_version(go_mod: Path) -> tuple[int, ...]:
    line = re.search(r"^go (\d+(?:\.\d+)*)$", go_mod.read_text(), re.MULTILINE)
    return tuple(int(part) for part in line.group(1).split(".")) if line else (1, 0)


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def installed_version(go: Path) -> tuple[int, ...] | None:
    """`go env GOVERSION` as numbers; None for no working go or a development build."""
    try:
        done = subprocess.run(
            [str(go), "env", "GOVERSION"],
            capture_output=True,
            text=True,
            env={**os.environ, "GOTOOLCHAIN": "local"},  # itself, not one it would switch to
        )
    except OSError:
        return None
    found = re.fullmatch(r"go(\d+(?:\.\d+)*)\s*", done.stdout)
    return tuple(int(part) for part in found.group(1).split(".")) if found else None


def fetch_toolchain(home: Path, version: str, expected_sum: str) -> None:
    """Download golang.org/toolchain@version, check its hash, unpack it into `home`.

    Nothing is left in `home` unless the hash matched and the whole tree is unpacked: the
    tree is built beside it and renamed into place.
    """
    home.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home.parent, prefix=f".{home.name}-") as scratch:
        archive_path = Path(scratch) / "toolchain.zip"
        _download(f"golang.org/toolchain/@v/{version}.zip", archive_path)
        with zipfile.ZipFile(archive_path) as archive:
            found = module_hash(archive)
            if found != expected_sum:
                raise NoToolchain(
                    f"golang.org/toolchain@{version}: hash {found}, expected {expected_sum} "
                    "(devstack/go_toolchain.py): not using it"
                )
            tree = Path(scratch) / "go"
            _unpack(archive, f"golang.org/toolchain@{version}/", tree)
        tree.rename(home)
    _progress(f"{version} matches {expected_sum}; unpacked into {home}")


def module_hash(archive: zipfile.ZipFile) -> str:
    """The go.sum hash of a module zip (dirhash Hash1, as golang.org/x/mod computes it)."""
    lines = []
    for name in sorted(info.filename for info in archive.infolist() if not info.is_dir()):
        digest = hashlib.sha256()
        with archive.open(name) as member:
            while chunk := member.read(1 << 20):
                digest.update(chunk)
        lines.append(f"{digest.hexdigest()}  {name}\n")
    summary = hashlib.sha256("".join(lines).encode()).digest()
    return "h1:" + base64.b64encode(summary).decode()


def _unpack(archive: zipfile.ZipFile, prefix: str, tree: Path) -> None:
    for info in archive.infolist():
        relative = info.filename.removeprefix(prefix)
        if info.is_dir() or relative == info.filename or ".." in Path(relative).parts:
            continue
        target = tree / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as source, target.open("wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        # Module zips keep no file modes; Go marks these executable when it unpacks one.
        target.chmod(0o755 if relative.startswith(("bin/", "pkg/tool/")) else 0o644)


def proxies() -> list[str]:
    """GOPROXY's proxies in order (`direct` cannot serve a toolchain, `off` ends the list)."""
    found = []
    for entry in re.split(r"[,|]", os.environ.get("GOPROXY") or DEFAULT_PROXY):
        if entry == "off":
            break
        if entry and entry != "direct":
            found.append(entry.rstrip("/"))
    return found


def _download(path: str, target: Path) -> None:
    """Fetch from each proxy in turn until one serves it, with a progress line per tenth."""
    tried = []
    for proxy in proxies():
        url = f"{proxy}/{path}"
        try:
            with urllib.request.urlopen(url, timeout=60) as response, target.open("wb") as sink:
                size = int(response.headers.get("Content-Length") or 0)
                _progress(f"fetching {url} ({size / 1e6:.0f} MB)")
                started, done, shown = time.monotonic(), 0, 0
                while chunk := response.read(1 << 20):
                    sink.write(chunk)
                    done += len(chunk)
                    if size and done * 10 // size > shown:
                        shown = done * 10 // size
                        _progress(f"  {done / 1e6:.0f} of {size / 1e6:.0f} MB")
                _progress(f"fetched in {time.monotonic() - started:.0f} s")
                return
        except (urllib.error.URLError, OSError, ValueError) as error:
            tried.append(f"{url}: {error}")
    why = "; ".join(tried) or "GOPROXY names no proxy"
    raise NoToolchain(
        f"could not fetch the Go toolchain ({why}): install Go of at least the version "
        "tools/ferretdb/go.mod names, or set GOPROXY"
    )


def _progress(line: str) -> None:
    print(f"go-toolchain: {line}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    try:
        print(go_binary())
    except NoToolchain as error:
        sys.exit(f"go-toolchain: {error}")
