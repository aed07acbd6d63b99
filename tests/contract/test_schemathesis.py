"""Schemathesis against the running gateway's own /openapi.json: every operation, every
check (see schemathesis.toml for the two the schema cannot express), a fixed seed and a
bounded number of examples, so a failure reproduces and the run takes seconds."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

SEED = 42
MAX_EXAMPLES = 100
CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_the_gateway_keeps_its_own_openapi_description(gateway, tmp_path):
    schemathesis = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run(
        [
            schemathesis,
            "--config-file",
            CONFIG,
            "run",
            f"{gateway}/openapi.json",
            "--checks",
            "all",
            "--seed",
            str(SEED),
            "--max-examples",
            str(MAX_EXAMPLES),
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-6000:]
    with urllib.request.urlopen(f"{gateway}/openapi.json") as response:
        operations = sum(len(path) for path in json.load(response)["paths"].values())
    # Every operation but the description's own URL, which Schemathesis leaves out.
    assert f"Tested: {operations - 1}\n" in run.stdout
