"""The documents a user reads: README a short front door, the rest in docs/, all of it inside
the repository, and every command they give run by a test or by CI."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
OUTSIDE = "../" + "shared"  # spelt apart, so this file does not name it
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")

# Where each command the documents give is run: a pattern the command matches, the file
# that runs it, and what in that file shows it does ({1}: the pattern's first group).
RUN_BY = [
    (
        r"docker compose (up -d --build --wait|run --rm app coupon-saga audit|ps)$",
        ".github/workflows/ci.yml",
        "docker compose {1}",
    ),
    (r"docker compose (logs|down)\b", ".github/workflows/ci.yml", "docker compose {1}"),
    (r"make test$", ".ci/run", "make test"),
    (r"make run$", "devstack/fresh_machine/two_commands.py", "make run"),
    (r"make stack-ha$", "tests/failover/test_devstack_ha.py", '"--ha"'),
    (r"make test-cluster$", "Makefile", "tests/cluster"),
    (r"python -m devstack\.cluster --hosts", "tests/cluster/test_cli.py", '"devstack.cluster"'),
    (r"make deps$", ".github/workflows/ci.yml", "run: scripts/install-deps"),
    (r"make lint$", ".github/workflows/ci.yml", "run: make lint"),
    (r"\.venv/bin/python -m pytest (tests/\w+)$", ".github/workflows/ci.yml", "pytest {1}"),
    (r"curl .*localhost:(8080|\$PORT)/api/coupons", "tests/e2e/test_contract.py", "/api/coupons"),
    (r"scripts/smoke (http://localhost:8080)$", ".github/workflows/ci.yml", "scripts/smoke {1}"),
    (
        r"coupon-saga (list|show|resume|compensate|recover)\b",
        "tests/e2e/test_replay_tool.py",
        'coupon_saga(settings, "{1}"',
    ),
    (r"coupon-saga (audit)\b", "tests/failover/test_sale_through_failovers.py", '"{1}"'),
    (r"\.venv/bin/python -m devstack$", "tests/e2e/test_local_run.py", '"-m", "devstack"'),
    (
        r"TEST_FAULT_STALL_AFTER=\w+ TEST_FAULT_STALL_SECONDS=\d+ .*tests\.support\.faulty_gateway",
        "tests/support/faulty_gateway.py",
        "TEST_FAULT_STALL_AFTER",
    ),
]
SHELL_ONLY = re.compile(r"export \w+=\S+$|for \w+ in [^;]+; do$|done$")  # the shell's own
# Commands no test runs as written, and why.
NOT_RUN = {
    "psql": "REPLAY.md's walkthrough closes the database by hand; "
    "tests/faults/test_ended_sessions.py ends the pool's sessions the same way",
}
# Records of how each figure was measured, on that day's machine; bench itself is run by
# tests/e2e/test_bench.py.
MEASUREMENT_RECIPES = {"PERFORMANCE.md"}


def shell_commands(path: Path) -> Iterator[str]:
    """Each command of the document's ```sh blocks, continuation lines joined, comments cut."""
    fence, pending = None, ""
    for line in path.read_text().splitlines():
        if line.strip().startswith("```"):
            fence = None if fence is not None else line.strip()[3:]
            continue
        if fence != "sh":
            continue
        line = pending + line.strip()
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        pending = ""
        command = re.sub(r"(^|\s+)#.*$", "", line).strip().rstrip("&").strip()
        if command:
            yield command


def prose_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Lines outside ```console transcripts (output as it was printed, kept as it was)."""
    fence = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith("```"):
            fence = None if fence is not None else line.strip()[3:]
            continue
        if fence != "console":
            yield number, line


def tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name]


def test_no_tracked_file_points_outside_the_repository():
    naming = []
    for path in tracked_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary, or deleted in the working tree
        if OUTSIDE in text:
            naming.append(str(path.relative_to(ROOT)))
    assert naming == []


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.name)
def test_every_link_leads_to_a_file_in_the_repository(path: Path):
    broken = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a URL, or a place in the same document
        found = (path.parent / target.split("#")[0]).resolve()
        if not found.is_relative_to(ROOT) or not found.exists():
            broken.append(target)
    assert broken == []


# A section named after a link (`[DESIGN.md](DESIGN.md), "Locking and isolation"`) or by
# `see "Failover"` in the same document; a name may stop at the heading's colon.
SECTION_AFTER_LINK = re.compile(r"\[[^\]]*\]\(([^)#\s]+\.md)\),? \"([^\"]+)\"")
SECTION_SEEN = re.compile(r"\bsee \"([A-Z][^\"]*)\"")
# "~350 tests", "812 collected": true the day they were written, stale the next.
TEST_COUNT = re.compile(r"\b\d[\d,]* (?:tests|collected|test cases)\b")


def headings(path: Path) -> list[str]:
    return [
        line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")
    ]


def names_a_heading(name: str, path: Path) -> bool:
    return any(h == name or h.startswith(f"{name}:") for h in headings(path))


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.name)
def test_every_section_a_document_points_to_exists(path: Path):
    text = " ".join(line.strip() for _, line in prose_lines(path))  # a reference may wrap
    dangling = [
        f"{target}, {name!r}"
        for target, name in SECTION_AFTER_LINK.findall(text)
        if not names_a_heading(name, (path.parent / target).resolve())
    ]
    dangling += [
        repr(name) for name in SECTION_SEEN.findall(text) if not names_a_heading(name, path)
    ]
    assert dangling == []


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.name)
def test_no_document_counts_the_tests(path: Path):
    assert TEST_COUNT.findall(path.read_text()) == []


def test_readme_is_a_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.name)
def test_no_line_is_over_100_characters_but_tables_and_urls(path: Path):
    long = [
        number
        for number, line in prose_lines(path)
        if len(line) > 100 and not line.lstrip().startswith("|") and "://" not in line
    ]
    assert long == []


def test_readme_gives_the_test_command_ci_runs():
    ci_runs = (ROOT / ".ci/run").read_text().strip().splitlines()[-1]
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Test it") :]
    assert next(shell_commands_of(section)) == ci_runs


def shell_commands_of(text: str) -> Iterator[str]:
    block = re.search(r"```sh\n(.*?)```", text, re.DOTALL)
    assert block is not None
    yield from (line.strip() for line in block.group(1).splitlines() if line.strip())


@pytest.mark.parametrize(
    "path", [p for p in DOCUMENTS if p.name not in MEASUREMENT_RECIPES], ids=lambda p: p.name
)
def test_every_command_in_the_documents_is_run_by_a_test_or_ci(path: Path):
    unrun = []
    for command in shell_commands(path):
        if SHELL_ONLY.match(command) or command.split()[0] in NOT_RUN:
            continue
        for pattern, runner, evidence in RUN_BY:
            match = re.search(pattern, command)
            if match:
                shown = evidence.format(command, *match.groups())
                assert shown in (ROOT / runner).read_text(), (command, runner, shown)
                break
        else:
            unrun.append(command)
    assert unrun == [], "a command no test or CI job runs: run it in one, or name it in RUN_BY"
