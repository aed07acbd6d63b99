"""README's two commands on a machine: `make run` until a claim is answered (twice: the
first run installs everything, the second finds it installed), and `make test`."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Protocol

from devstack.fresh_machine.claim import claim_one
from devstack.fresh_machine.timings import Timings

# `make run` prints this once, when the gateway listens (README, "Run it").
_LISTENING = re.compile(rb"coupon-service: API on (http://\S+)")
_STOP_SECONDS = 120  # the gateway, then the stores, after a Ctrl-C


class PhaseFailed(Exception):
    pass


class Machine(Protocol):
    def start(self, script: str, env: dict[str, str]) -> subprocess.Popen[bytes]: ...
    def processes_left(self) -> list[str]: ...


class Here:
    """This machine, in a clone at `checkout`: the hosted CI's debian:12 container."""

    def __init__(self, checkout: Path) -> None:
        self.checkout = checkout

    def start(self, script: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["bash", "-c", script],
            cwd=self.checkout,
            env=os.environ | env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def processes_left(self) -> list[str]:
        return []  # a container's own processes cannot be told apart from ours


def run_two_commands(machine: Machine, timings: Timings, tests: str, within: float) -> None:
    # Loopback only, on a free port: the chroot shares this host's network.
    env = {"HOST": "127.0.0.1", "PORT": str(_free_port())}
    with timings.phase("first make run, until a claim is answered"):
        make_run_until_claimed(machine, env, within)
    with timings.phase(f"make test, PYTEST_ADDOPTS={tests}"):
        command = machine.start("make test", env | {"PYTEST_ADDOPTS": tests})
        if code := Transcript(command).wait(None):
            raise PhaseFailed(f"make test exited {code}")
    with timings.phase("second make run (all installed), until a claim is answered"):
        make_run_until_claimed(machine, env, within)


def make_run_until_claimed(machine: Machine, env: dict[str, str], within: float) -> None:
    """`make run` in the background; once it says where the API is, one claim; then a
    Ctrl-C, and nothing of it may be left running."""
    gateway = machine.start("exec make run", env)
    transcript = Transcript(gateway)
    try:
        url = transcript.listening_url(within)
        if url is None:
            raise PhaseFailed(f"make run exited {gateway.wait()} before its API listened")
        claim_one(url)
        print(f"fresh-machine: {url}: a claim answered 200", flush=True)
    finally:
        _interrupt(gateway)
        transcript.wait(_STOP_SECONDS)
    if left := machine.processes_left():
        raise PhaseFailed("make run left running after a Ctrl-C: " + "; ".join(left))


class Transcript:
    """A command's output, copied to ours line by line, and what it said when."""

    def __init__(self, command: subprocess.Popen[bytes]) -> None:
        self.command = command
        self.started = time.monotonic()
        self._heard: queue.Queue[str | None] = queue.Queue()  # a URL; None: output ended
        self._copier = threading.Thread(target=self._copy, daemon=True)
        self._copier.start()

    def _copy(self) -> None:
        assert self.command.stdout is not None
        for line in self.command.stdout:
            elapsed = time.monotonic() - self.started
            sys.stdout.write(f"  {elapsed:5.0f} s | {line.decode(errors='replace')}")
            sys.stdout.flush()
            if found := _LISTENING.search(line):
                self._heard.put(found.group(1).decode())
        self._heard.put(None)

    def listening_url(self, within: float) -> str | None:
        """Where the API listens, once the command says so; None if it ended first."""
        try:
            return self._heard.get(timeout=within)
        except queue.Empty:
            raise PhaseFailed(f"no API listening after {within:.0f} s") from None

    def wait(self, within: float | None) -> int:
        """The command's exit code, once it and everything holding its output have ended."""
        self._copier.join(within)
        if self._copier.is_alive():
            raise PhaseFailed(f"its output still open {within:.0f} s after it was stopped")
        return self.command.wait()


def _interrupt(command: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a terminal sends it to the foreground group; SIGKILL if it outstays it."""
    try:
        os.killpg(command.pid, signal.SIGINT)
        command.wait(timeout=_STOP_SECONDS)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(command.pid, signal.SIGKILL)
        raise PhaseFailed(f"make run still running {_STOP_SECONDS} s after a Ctrl-C") from None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
