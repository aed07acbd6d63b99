"""Write docs/CONFIGURATION.md from `Settings`: each setting's name, type, default and comment;
and .env.example: the common settings, commented out at their defaults.

    .venv/bin/python scripts/settings_doc.py           # write both (`make docs`)
    .venv/bin/python scripts/settings_doc.py --check   # exit 1 when either differs from Settings

The comment is the one the field carries in orchestrator/settings.py: the comment at the
end of its line, else the comment lines right above it; a field that follows such a
field with no blank line and no comment of its own shares its comment.
"""

from __future__ import annotations

import argparse
import ast
import io
import sys
import textwrap
import tokenize
from pathlib import Path

import annotated_types
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.settings import _TIMING_RULES, Settings  # noqa: E402

SOURCE = ROOT / "orchestrator" / "settings.py"
TARGET = ROOT / "docs" / "CONFIGURATION.md"
ENV_EXAMPLE = ROOT / ".env.example"
# What a newcomer sets first; the rest are in docs/CONFIGURATION.md.
COMMON = (
    "host",
    "port",
    "workers",
    "log_level",
    "database_url",
    "mongo_url",
    "mongo_db",
    "redis_url",
    "admin_token",
)
ENV_HEADER = """\
# The settings most often changed, at their defaults. Generated from `Settings`
# (orchestrator/settings.py) by scripts/settings_doc.py (`make docs`); every setting is in
# docs/CONFIGURATION.md. Copy to .env in the working directory and uncomment what you
# change: the environment, then .env, then the default. A *_URL set here is used as it
# is, and `make run` starts no store of its own for it.
"""
BOUNDS = {  # each constraint's attribute, and how it reads
    annotated_types.Ge: ("ge", "≥"),
    annotated_types.Gt: ("gt", ">"),
    annotated_types.Le: ("le", "≤"),
    annotated_types.Lt: ("lt", "<"),
    annotated_types.MinLen: ("min_length", "length ≥"),
}
HEADER = """\
# Configuration reference

Generated from `Settings` (orchestrator/settings.py) by `scripts/settings_doc.py`; do not
edit by hand (`make docs` writes it, and a unit test fails when it differs). Every setting
comes from the environment, or from a `.env` file in the working directory, by its name
in capitals. What the settings mean together (the connection budget, timings, failover)
is in [OPERATING.md](OPERATING.md).

| name | type | default | meaning |
| --- | --- | --- | --- |
"""


def comments(source: str) -> tuple[dict[int, str], set[int]]:
    """Each line's comment text, and the lines that are nothing but a comment."""
    found: dict[int, str] = {}
    alone: set[int] = set()
    lines = source.splitlines()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row = token.start[0]
            found[row] = token.string.lstrip("#").strip()
            if lines[row - 1].lstrip().startswith("#"):
                alone.add(row)
    return found, alone


def field_comments(source: str) -> dict[str, str]:
    found, alone = comments(source)
    settings = next(
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.ClassDef) and node.name == "Settings"
    )
    result: dict[str, str] = {}
    shared, previous_end = "", -1
    for node in settings.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        own = " ".join(
            found[row]
            for row in range(node.lineno, (node.end_lineno or node.lineno) + 1)
            if row in found and row not in alone
        )
        above: list[str] = []
        row = node.lineno - 1
        while row in alone:
            above.insert(0, found[row])
            row -= 1
        if own:
            result[node.target.id], shared = own, ""
        elif above:
            result[node.target.id] = shared = " ".join(above)
        else:
            follows = previous_end == node.lineno - 1
            result[node.target.id] = shared if follows else ""
        previous_end = node.end_lineno or node.lineno
    return result


def type_of(info: FieldInfo, annotation: str) -> str:
    bounds = [
        f"{sign} {_value(getattr(rule, attribute))}"
        for rule in info.metadata
        for kind, (attribute, sign) in BOUNDS.items()
        if isinstance(rule, kind)
    ]
    return _cell(f"`{annotation}`" + (f", {', '.join(bounds)}" if bounds else ""))


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or "—"  # a table cell: "|" would end it


def default_of(info: FieldInfo) -> str:
    if info.default is None:
        return "unset"
    if info.default == "":
        return "empty"
    return f"`{_value(info.default)}`"


def render() -> str:
    source = SOURCE.read_text()
    described = field_comments(source)
    annotations = {
        node.target.id: ast.unparse(node.annotation)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }
    rows = [
        f"| `{name.upper()}` | {type_of(info, annotations[name])} | {default_of(info)} | "
        f"{_cell(described[name])} |"
        for name, info in Settings.model_fields.items()
    ]
    rules = [
        textwrap.fill(f"- {message}.", width=92, subsequent_indent="  ", break_on_hyphens=False)
        for _, message in _TIMING_RULES
    ]
    return (
        HEADER
        + "\n".join(rows)
        + "\n\n## Rules between settings\n\nChecked at start (`_TIMING_RULES`); a broken one "
        "stops the service with one line naming it:\n\n" + "\n".join(rules) + "\n"
    )


def env_default(info: FieldInfo) -> str:
    return "" if info.default is None else _value(info.default)


def render_env_example() -> str:
    described = field_comments(SOURCE.read_text())
    blocks = [
        textwrap.fill(described[name], width=92, initial_indent="# ", subsequent_indent="# ")
        + f"\n# {name.upper()}={env_default(Settings.model_fields[name])}"
        for name in COMMON
    ]
    return ENV_HEADER + "\n" + "\n\n".join(blocks) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file differs")
    args = parser.parse_args()
    wanted = {TARGET: render(), ENV_EXAMPLE: render_env_example()}
    if args.check:
        differ = [
            path for path, text in wanted.items() if not path.is_file() or path.read_text() != text
        ]
        for path in differ:
            print(f"{path.relative_to(ROOT)} differs from Settings: run {__file__}")
        return 1 if differ else 0
    for path, text in wanted.items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
