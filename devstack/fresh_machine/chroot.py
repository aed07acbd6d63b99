"""Commands in a chroot, and the cleanup that leaves nothing of it behind.

Each command runs in a mount namespace of its own (`unshare --mount`, private
propagation): /proc, /sys, /dev, /dev/pts and /dev/shm are mounted inside it, so they go
away with its last process, also when this program is killed, and never appear on the
host. What a killed earlier run can still leave is processes inside the root (their
namespace, and its mounts, live on with them) and, from older tools such as a debootstrap
killed mid-way, mounts on the host below the root: `leave_nothing_in` ends both.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MOUNT_AND_ENTER = """set -e
root=$1; shift
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
exec chroot "$root" "$@"
"""


class Chroot:
    """A root folder with a clone of the project at `checkout` (a path inside it); `env`
    is set for every command, on top of a login's PATH, HOME and locale."""

    def __init__(self, root: Path, checkout: str, env: dict[str, str]) -> None:
        self.root = root
        self.checkout = checkout
        self.env = env

    def start(self, script: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """`script` by bash in the checkout, with only self.env and `env` added to a login's."""
        login = {"HOME": "/root", "PATH": PATH, "LANG": "C.UTF-8", "TERM": "dumb"}
        environment = login | self.env | env
        argv = [
            "unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", _MOUNT_AND_ENTER, "enter", str(self.root),
            "/usr/bin/env", "-i", *(f"{name}={value}" for name, value in environment.items()),
            "/bin/bash", "-c", f"cd {self.checkout} && {script}",
        ]  # fmt: skip
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, to be sent a Ctrl-C as a terminal would
        )

    def processes_left(self) -> list[str]:
        return [_describe(pid) for pid in processes_inside(self.root)]


def processes_inside(root: Path) -> list[int]:
    """Every process whose root directory is `root`, in whichever mount namespace."""
    own = root.stat()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            theirs = (entry / "root").stat()
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        if (theirs.st_dev, theirs.st_ino) == (own.st_dev, own.st_ino):
            found.append(int(entry.name))
    return found


def stop_processes_inside(root: Path, grace_seconds: float = 10) -> None:
    """SIGTERM to each, and SIGKILL to those still there after `grace_seconds`."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_inside(root):
            with contextlib.suppress(ProcessLookupError):  # ended meanwhile
                os.kill(pid, signum)
        deadline = time.monotonic() + grace_seconds
        while processes_inside(root) and time.monotonic() < deadline:
            time.sleep(0.1)
    if left := processes_inside(root):
        raise RuntimeError(f"processes in {root} survived SIGKILL: {left}")


def mounts_under(folder: Path) -> list[Path]:
    """This namespace's mount points at or below `folder`, deepest first."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = Path(_unescape(line.split()[4]))
        if point == folder or folder in point.parents:
            points.append(point)
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


def leave_nothing_in(root: Path) -> None:
    """End the processes chrooted into `root` and unmount whatever is mounted below it."""
    if root.is_dir():
        stop_processes_inside(root)
    for point in mounts_under(root):
        subprocess.run(["umount", "--lazy", str(point)], check=True)
    if left := mounts_under(root):
        raise RuntimeError(f"still mounted under {root}: {left}")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for escaped, plain in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, plain)
    return field


def _describe(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
    except OSError:
        return str(pid)
    return f"{pid} {command.decode(errors='replace')}"
