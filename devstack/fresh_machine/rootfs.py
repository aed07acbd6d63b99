"""A minimal Debian bookworm in a folder: debootstrapped into a tarball kept for the next
run, laid out anew from it each run, with a clone of the project's committed state."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack.fresh_machine.chroot import Chroot, leave_nothing_in

SUITE = "bookworm"
# What README asks of the machine before its two commands: git for the clone, make, and
# Python >= 3.11. Everything else is for `make run` to install.
PREREQUISITES = ("git", "make", "python3")
CHECKOUT = "/srv/coupon-service"  # as root: a folder the postgres user can reach


def tarball_path(workdir: Path) -> Path:
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return workdir / f"{SUITE}-{arch}-minbase.tar"


def debootstrap(tarball: Path, mirror: str) -> None:
    """debootstrap's minimal bookworm (minbase) with PREREQUISITES, into `tarball`."""
    staging = tarball.with_name("debootstrap")
    remove_root(staging)
    # In a mount namespace of its own: the /proc and /sys it mounts die with it.
    subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "debootstrap",
         "--variant=minbase", f"--include={','.join(PREREQUISITES)}",
         SUITE, str(staging), mirror],
        check=True,
    )  # fmt: skip
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "-C", str(staging), "-cf", str(partial), "."], check=True)
    partial.rename(tarball)
    remove_root(staging)


def lay_out(root: Path, tarball: Path, project: Path) -> Chroot:
    """The base unpacked into `root` (anew), the project's HEAD cloned into CHECKOUT."""
    remove_root(root)  # also what a killed run left
    root.mkdir()
    subprocess.run(["tar", "-C", str(root), "-xf", str(tarball)], check=True)
    trust = trust_what_the_host_trusts(root)
    clone(project, root / CHECKOUT.lstrip("/"))
    return Chroot(root, CHECKOUT, trust)


@contextmanager
def left_clean(root: Path, *, keep: bool) -> Iterator[None]:
    """On leaving, however: every process inside `root` ended, everything mounted below it
    unmounted and, unless `keep`, the folder deleted."""
    try:
        yield
    finally:
        leave_nothing_in(root)
        if not keep:
            remove_root(root)


def trust_what_the_host_trusts(root: Path) -> dict[str, str]:
    """The host's name server and certificate authorities, as a machine on this network
    would be given them; the environment that points Python's HTTPS clients at them.

    Where HTTPS to the registries goes through a TLS-inspecting proxy (this development
    machine's does), its CA is in the host's bundle. The bundle becomes a local CA, which
    the ca-certificates package, once `make run` installs it, adds to the system's; pip
    and requests (pip-audit), which bring a bundle of their own, are pointed at it.
    """
    shutil.copyfile("/etc/resolv.conf", root / "etc" / "resolv.conf")
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not bundle.exists():
        return {}
    local = root / "usr" / "local" / "share" / "ca-certificates"
    local.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bundle, local / "host-bundle.crt")
    return {"PIP_CERT": str(bundle), "REQUESTS_CA_BUNDLE": str(bundle)}


def clone(project: Path, target: Path) -> None:
    """A clone of the commit checked out in `project`: what is committed, nothing else."""
    head = subprocess.run(
        ["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(
        ["git", "clone", "--quiet", "--no-checkout", str(project), str(target)], check=True
    )
    subprocess.run(["git", "-C", str(target), "checkout", "--quiet", "--detach", head], check=True)


def remove_root(root: Path) -> None:
    """Delete a root folder, but only once nothing runs in it and nothing is mounted below:
    deleting through a bind mount of /dev would delete the host's."""
    leave_nothing_in(root)
    if root.exists():
        shutil.rmtree(root)
