"""The directory a gateway's workers share their metrics in (PROMETHEUS_MULTIPROC_DIR):
one per gateway, under the temp dir, removed when the gateway stops.

A gateway killed with SIGKILL cannot remove its own, so each start removes those left
behind. Which ones are: each directory holds a lock file its gateway keeps locked (flock)
for as long as it runs. The kernel drops the lock when the last process holding it ends,
and the forked workers share it with the main process, so a lock nobody holds is a
gateway that is gone, workers and all, whatever its pid and in whichever PID namespace
it ran. A pid recorded in the name could not say that: pids are reused, a worker can
outlive its main process, and containers sharing a temp dir see each other's pids apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

PREFIX = "coupon-metrics-"
# A directory is made under this name and takes its final one only once it is locked,
# so no start-up ever sees one of ours without its lock held.
_BEING_MADE = ".coupon-metrics-new-"
_LOCK = "gateway.lock"


@contextlib.contextmanager
def metrics_directory() -> Iterator[str]:
    """A new directory, locked for as long as the context lasts, then removed; those other
    gateways left behind are removed first."""
    remove_abandoned(Path(tempfile.gettempdir()))
    lock, path = _made_and_locked()
    try:
        yield str(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(lock)


def remove_abandoned(temp: Path) -> None:
    """Remove every metrics directory in `temp` whose lock no process holds. One without a
    lock file is left alone: not made by this code, so nothing says it is abandoned."""
    for path in temp.glob(f"{PREFIX}*"):
        try:
            lock = os.open(path / _LOCK, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live gateway's
        else:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(lock)


def _made_and_locked() -> tuple[int, Path]:
    made = Path(tempfile.mkdtemp(prefix=_BEING_MADE))
    lock = os.open(made / _LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    path = made.with_name(PREFIX + made.name.removeprefix(_BEING_MADE))
    made.rename(path)
    return lock, path
