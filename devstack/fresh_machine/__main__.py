"""`python3 -m devstack.fresh_machine`: README's two commands on a fresh Debian 12, timed.

    python3 -m devstack.fresh_machine            # as root: in a chroot of a debootstrapped bookworm
    python3 -m devstack.fresh_machine --here     # in this clone: this machine is the fresh one

In a chroot (`make test-fresh`): a minimal bookworm (debootstrap's minbase, plus git, make
and python3) is laid out in WORKDIR/rootfs, the checkout's HEAD is cloned into it, and
there `make run` runs until a claim is answered, then `make test` (with PYTEST_ADDOPTS
naming the tests: lint and the unit tier by default), then `make run` once more, now with
everything installed. Each phase prints how long it took. The debootstrapped base is kept
as a tarball in WORKDIR for the next run (--again makes it anew); the rootfs is deleted
at the end unless --keep. Processes are ended and mounts removed whatever happens.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
from pathlib import Path

from devstack.fresh_machine.rootfs import debootstrap, lay_out, left_clean, tarball_path
from devstack.fresh_machine.timings import Timings
from devstack.fresh_machine.two_commands import Here, run_two_commands

PROJECT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m devstack.fresh_machine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--here", action="store_true", help="run in this clone, no chroot")
    parser.add_argument("--tests", default="tests/unit", help="PYTEST_ADDOPTS for make test")
    parser.add_argument("--within", type=float, default=1800, help="seconds for a make run")
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/coupon-service-fresh"))
    parser.add_argument("--mirror", default="http://deb.debian.org/debian")
    parser.add_argument("--again", action="store_true", help="debootstrap anew")
    parser.add_argument("--keep", action="store_true", help="keep WORKDIR/rootfs at the end")
    args = parser.parse_args()

    timings = Timings()
    try:
        if args.here:
            run_two_commands(Here(Path.cwd()), timings, args.tests, args.within)
        else:
            in_chroot(args, timings)
    except Exception as error:
        print(f"fresh-machine: FAILED: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        print("fresh-machine: timings\n" + timings.report(), flush=True)
    return 0


def in_chroot(args: argparse.Namespace, timings: Timings) -> None:
    if os.geteuid() != 0:
        raise PermissionError("debootstrap, mount and chroot need root: run it with sudo")
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / "lock").open("w") as lock:
        try:  # two runs would remove each other's root
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another run holds {workdir / 'lock'}") from None
        tarball = tarball_path(workdir)
        if args.again or not tarball.exists():
            with timings.phase("debootstrap a minimal bookworm"):
                debootstrap(tarball, args.mirror)
        root = workdir / "rootfs"
        with left_clean(root, keep=args.keep):
            with timings.phase(f"unpack {tarball.name}, clone HEAD into it"):
                machine = lay_out(root, tarball, PROJECT)
            run_two_commands(machine, timings, args.tests, args.within)


if __name__ == "__main__":
    sys.exit(main())
