"""`python -m bench.top_frames FILE... [--top N]`: the top frames of py-spy's raw output
(`py-spy record --format raw`: one folded stack a line, then its sample count), by the
share of samples in which a frame is the leaf (its own time) and in which it is on the
stack at all (its own and its callees'). Several files (one per worker) add up.

A frame is named `function (file)`, the file shortened to its path inside site-packages,
the standard library or the checkout, and without the line: a function's samples at all
its lines count together.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"(?P<function>.*) \((?P<path>.*?)(:\d+)?\)$")
_ROOTS = ("site-packages/", "lib/python3.11/", "lib/python3.12/", "lib/python3.13/")


def frame_name(frame: str) -> str:
    found = _FRAME.match(frame)
    if not found:
        return frame
    path = found["path"]
    for root in _ROOTS:
        if root in path:
            path = path.split(root, 1)[1]
            break
    else:
        for package in ("/orchestrator/", "/services/", "/sagas/", "/bench/"):
            if package in path:
                path = package.strip("/") + "/" + path.rsplit(package, 1)[1]
                break
    return f"{found['function']} ({path})"


@dataclass(frozen=True)
class Profile:
    samples: int
    own: Counter[str]  # samples with the frame as the leaf
    on_stack: Counter[str]  # samples with the frame anywhere on the stack


def read(lines: Iterable[str]) -> Profile:
    samples, own, on_stack = 0, Counter[str](), Counter[str]()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        frames = [frame_name(frame) for frame in stack.split(";")]
        samples += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            on_stack[frame] += int(count)
    return Profile(samples, own, on_stack)


def table(profile: Profile, top: int) -> list[str]:
    def rows(counts: Counter[str]) -> list[str]:
        return [
            f"| {100 * n / profile.samples:.1f}% | {n} | `{frame}` |"
            for frame, n in counts.most_common(top)
        ]

    header = ["| share | samples | frame |", "| --- | --- | --- |"]
    return [
        f"{profile.samples} samples",
        "",
        "own time (the frame is the leaf):",
        "",
        *header,
        *rows(profile.own),
        "",
        "on the stack (the frame and its callees):",
        "",
        *header,
        *rows(profile.on_stack),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.top_frames", description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    lines = [line for path in args.files for line in path.read_text().splitlines()]
    print("\n".join(table(read(lines), args.top)))


if __name__ == "__main__":
    main()
