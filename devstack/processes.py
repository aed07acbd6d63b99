"""Server processes: spawned in a session of their own, dying with their parent, checked up.

A server started here is out of reach of the terminal's Ctrl-C (which goes to the whole
foreground process group): whoever started it stops it, after what uses it. If that
process dies without stopping it, the kernel sends the server its own stop signal
(PR_SET_PDEATHSIG), so nothing is left running either way.
"""

from __future__ import annotations

import ctypes
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_START_TIMEOUT = 60.0


class StackError(RuntimeError):
    """A server could not be found or started. The first line of the message says which."""


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: signal.Signals = signal.SIGTERM

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def claim_port(name: str, port: int, remedy: str = "") -> int:
    """`port`, or a StackError naming the server when something already listens there."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as error:
            raise StackError(
                f"{name} cannot start: port {port} on 127.0.0.1 is taken ({error.strerror})"
                + (f"; {remedy}" if remedy else "")
            ) from error
    return port


def dies_with_parent(stop_signal: signal.Signals) -> Callable[[], None]:
    def arrange() -> None:
        # Runs in the child after the uid switch: a credential change clears the setting.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, stop_signal)
        # Signals the parent blocks (`python -m devstack` waits for them) stay blocked in
        # a child: the server would not hear its stop signal.
        signal.pthread_sigmask(signal.SIG_SETMASK, set())

    return arrange


def spawn(
    name: str,
    argv: list[str],
    log_path: Path,
    *,
    user: str | None = None,
    stop_signal: signal.Signals = signal.SIGTERM,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    try:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            user=user,
            group=pwd.getpwnam(user).pw_gid if user else None,
            extra_groups=[] if user else None,
            start_new_session=True,
            preexec_fn=dies_with_parent(stop_signal),
        )
    except FileNotFoundError as error:
        raise StackError(f"{name}: {argv[0]} not found; run `make deps`") from error
    finally:
        log.close()


def wait_until(
    name: str, server_ready: Callable[[], bool], process: subprocess.Popen[bytes], log_path: Path
) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(
                f"{name} exited with {process.returncode} at start; its log: {log_path}\n"
                + log_path.read_text()[-2000:]
            )
        if server_ready():
            return
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise StackError(
        f"{name} did not start within {_START_TIMEOUT:.0f}s; its log: {log_path}\n"
        + log_path.read_text()[-2000:]
    )


def accepts_tcp(port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    return check


def find(binary: str, *extra_dirs: str) -> str:
    found = shutil.which(binary)
    for directory in extra_dirs:
        candidate = Path(directory) / binary
        if not found and candidate.exists():
            found = str(candidate)
    if not found:
        raise StackError(f"{binary} not found; run `make deps`")
    return found
