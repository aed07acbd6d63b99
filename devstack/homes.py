"""Where a stack's servers keep their data, and which port each one listens on."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from devstack.processes import claim_port, free_port


class ThrowAwayHome:
    """A temp dir and free ports, deleted at the end: the tests' stores."""

    keep = False

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="coupon-stack-"))
        self.root.chmod(0o755)  # the postgres user must reach its data dir inside

    def port(self, server: str) -> int:
        return free_port()

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class KeptHome:
    """A folder that outlives the stack (`.run/`): data kept, each server on the port it had.

    A server's port is picked free the first time and stored in `ports.json`, so URLs
    stay the same across restarts, and another working tree's stores pick other ports.
    """

    keep = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # the postgres user must reach its data dir inside
        self._ports_file = root / "ports.json"
        self._ports: dict[str, int] = (
            json.loads(self._ports_file.read_text()) if self._ports_file.exists() else {}
        )

    def port(self, server: str) -> int:
        if server not in self._ports:
            self._ports[server] = free_port()
            self._ports_file.write_text(json.dumps(self._ports, indent=2) + "\n")
        remedy = f"stop what listens there, or delete {self._ports_file} to pick new ports"
        return claim_port(server, self._ports[server], remedy)

    def close(self) -> None:
        pass
