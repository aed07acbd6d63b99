"""The Go toolchain fetched for FerretDB: the pin fits go.mod, and a zip is unpacked only
when its go.sum hash is the committed one."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from devstack import go_toolchain
from devstack.go_toolchain import NoToolchain, fetch_toolchain, module_hash

ROOT = Path(__file__).resolve().parents[2]
VERSION = "v0.0.1-go1.99.0.linux-amd64"
PREFIX = f"golang.org/toolchain@{VERSION}/"
FILES = {"go.env": "GOTOOLCHAIN=auto\n", "bin/go": "#!/bin/sh\n", "pkg/tool/x/vet": "vet\n"}


def write_module_zip(path: Path, prefix: str, files: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            archive.writestr(prefix + name, content)


@pytest.fixture
def proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A GOPROXY in a folder (file://) serving one fake toolchain, after one that is away."""
    served = tmp_path / "proxy" / "golang.org" / "toolchain" / "@v" / f"{VERSION}.zip"
    served.parent.mkdir(parents=True)
    write_module_zip(served, PREFIX, FILES)
    monkeypatch.setenv("GOPROXY", f"direct,file://{tmp_path / 'away'},file://{tmp_path / 'proxy'}")
    return served


def test_module_hash_is_gos_own(tmp_path: Path):
    """Go's dirhash.HashZip (golang.org/x/mod) hashed this zip to this value."""
    files = {
        "go.mod": "module example.com/m\n",
        "bin/tool": "#!/bin/sh\necho tool\n",
        "README": "read me\n",
    }
    write_module_zip(tmp_path / "m.zip", "example.com/m@v1.0.0/", files)
    with zipfile.ZipFile(tmp_path / "m.zip") as archive:
        assert module_hash(archive) == "h1:yWHp9YucUvWbJrueVcj74h384VIQHUhkPHcbAgScs14="


def test_the_pinned_go_is_new_enough_and_pinned_for_both_architectures():
    required = go_toolchain.required_version(ROOT / "tools" / "ferretdb" / "go.mod")
    assert tuple(map(int, go_toolchain.GO_VERSION.split("."))) >= required
    assert set(go_toolchain.TOOLCHAIN_SUMS) == {"amd64", "arm64"}


def test_a_toolchain_whose_hash_matches_is_unpacked_with_its_programs_executable(
    tmp_path: Path, proxy: Path
):
    with zipfile.ZipFile(proxy) as archive:
        expected = module_hash(archive)
    home = tmp_path / "cache" / "go-1.99.0"
    fetch_toolchain(home, VERSION, expected)
    assert {str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()} == set(FILES)
    assert (home / "bin" / "go").stat().st_mode & 0o777 == 0o755
    assert (home / "pkg" / "tool" / "x" / "vet").stat().st_mode & 0o777 == 0o755
    assert (home / "go.env").stat().st_mode & 0o777 == 0o644
    assert list(home.parent.iterdir()) == [home]  # no download left beside it


def test_a_toolchain_whose_hash_differs_is_refused_and_leaves_nothing(tmp_path: Path, proxy: Path):
    cache = tmp_path / "cache"
    with pytest.raises(NoToolchain, match="expected h1:other"):
        fetch_toolchain(cache / "go-1.99.0", VERSION, "h1:other")
    assert list(cache.iterdir()) == []


def test_goproxy_off_fetches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GOPROXY", f"off,file://{tmp_path}")
    assert go_toolchain.proxies() == []
    with pytest.raises(NoToolchain, match="GOPROXY names no proxy"):
        fetch_toolchain(tmp_path / "go", VERSION, "h1:any")


def test_without_goproxy_the_public_proxy_is_asked(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("GOPROXY", raising=False)
    assert go_toolchain.proxies() == ["https://proxy.golang.org"]
    monkeypatch.setenv("GOPROXY", "https://a.example/|https://b.example,direct")
    assert go_toolchain.proxies() == ["https://a.example", "https://b.example"]
