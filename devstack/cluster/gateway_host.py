"""One gateway host: a namespace, its `coupon-service`, and what can happen to a host."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from devstack.cluster import cgroups
from devstack.cluster.haproxy import GATEWAY_PORT
from devstack.cluster.network import NetHost
from devstack.processes import StackError, spawn

_START_TIMEOUT = 180.0  # a hang guard: several gateways starting on a loaded 2-core host


class GatewayHost:
    def __init__(self, name: str, net: NetHost, log_path: Path, cgroup: Path | None) -> None:
        self.name, self.net, self.log_path, self.cgroup = name, net, log_path, cgroup
        self._process: subprocess.Popen[bytes] | None = None
        self._env: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://{self.net.address}:{GATEWAY_PORT}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, env: dict[str, str], workers: int = 1) -> None:
        """Start the gateway with `env` (its settings), bound to the host's address."""
        self._env = {
            **os.environ,
            **env,
            "HOST": "0.0.0.0",
            "PORT": str(GATEWAY_PORT),
            "WORKERS": str(workers),
        }
        self.restart()

    def restart(self) -> None:
        """Start the gateway again as it was last started (after `kill`)."""
        argv = self.net.command([sys.executable, "-m", "orchestrator"])
        self._process = spawn(f"gateway {self.name}", argv, self.log_path, env=self._env)
        if self.cgroup is not None:
            cgroups.enter(self.cgroup, self._process.pid)  # its workers are forked into it

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise StackError(f"gateway {self.name} exited:\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise StackError(f"gateway {self.name} not healthy in time:\n{self._log_tail()}")

    def kill(self) -> None:
        """SIGKILL everything running on the host, as a power cut would."""
        self._signal_all(signal.SIGKILL)
        if self._process is not None:
            self._process.wait()

    def pause(self) -> None:
        """SIGSTOP every process on the host: it holds its sockets and does nothing."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL whatever is left on the host."""
        self.resume()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=20)
        self.kill()

    def _signal_all(self, sent: signal.Signals) -> None:
        for pid in self.net.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sent)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"
