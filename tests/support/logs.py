"""Reading what a gateway process wrote to its log: one JSON object per line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The log's JSON lines, in order (anything else a process printed is skipped)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
