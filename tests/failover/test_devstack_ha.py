"""`python -m devstack --ha` (make stack-ha): the URLs it prints reach the topology, and
Ctrl-C, or the end of the command it ran, stops every process and deletes its folder."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from devstack.processes import find
from tests.support.ha_clients import sentinel_master
from tests.support.processes import mentioning

PROBE = """
import asyncio, os
import asyncpg

async def main():
    connection = await asyncpg.connect(os.environ["DATABASE_URL"])
    print(await connection.fetchval("SELECT pg_is_in_recovery()"))
    await connection.close()

print(os.environ["REDIS_SENTINEL_MASTER"], len(os.environ["REDIS_SENTINELS"].split(",")))
asyncio.run(main())
raise SystemExit(7)
"""


def exported(output: str) -> dict[str, str]:
    return {
        name: value.strip("'")
        for name, value in re.findall(r"^export (\w+)=(.*)$", output, re.MULTILINE)
    }


def test_ctrl_c_stops_what_the_printed_urls_reach(tmp_path: Path) -> None:
    log_path = tmp_path / "stack-ha.log"
    with log_path.open("wb") as log:
        stack = subprocess.Popen(
            [sys.executable, "-m", "devstack", "--ha"], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        for _ in range(3600):
            if "stores are up" in log_path.read_text():
                break
            assert stack.poll() is None, log_path.read_text()
            time.sleep(0.05)
        output = log_path.read_text()
        settings = exported(output)
        root = re.search(r"data and logs: (\S+)", output)
        assert root is not None, output

        asked = [find("psql"), settings["DATABASE_URL"], "-Atc", "SELECT pg_is_in_recovery()"]
        assert subprocess.run(asked, capture_output=True, text=True).stdout == "f\n"
        sentinels = settings["REDIS_SENTINELS"], settings["REDIS_SENTINEL_MASTER"]
        with sentinel_master(*sentinels) as master:
            assert master.set("coupon-ha:devstack", "1")
        assert settings["MONGO_URL"].startswith("mongodb://127.0.0.1:")

        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=120) == 0
        assert mentioning(root.group(1)) == []
        assert not Path(root.group(1)).exists()
    finally:
        if stack.poll() is None:
            stack.kill()
            stack.wait()


def test_a_command_runs_on_the_topology_and_its_exit_code_is_kept() -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "devstack", "--ha", "--", sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert ran.returncode == 7, ran.stderr
    assert ran.stdout.splitlines() == ["coupons 3", "False"]
