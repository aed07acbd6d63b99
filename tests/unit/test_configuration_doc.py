"""docs/CONFIGURATION.md and .env.example are generated from `Settings`: they must say what
the code says."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("settings_doc", ROOT / "scripts/settings_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_is_what_settings_say_now():
    wanted = generator().render()
    assert (ROOT / "docs/CONFIGURATION.md").read_text() == wanted, (
        "docs/CONFIGURATION.md differs from Settings: run `make docs`"
    )


def test_the_env_example_is_what_settings_say_now():
    assert (ROOT / ".env.example").read_text() == generator().render_env_example(), (
        ".env.example differs from Settings: run `make docs`"
    )


def test_the_env_example_names_real_settings_at_their_defaults():
    lines = (ROOT / ".env.example").read_text().splitlines()
    given = dict(
        line.removeprefix("# ").split("=", 1) for line in lines if re.match(r"# [A-Z_]+=", line)
    )
    assert given, "no setting in .env.example"
    for name, value in given.items():
        assert name.lower() in Settings.model_fields, name
        if value:  # uncommented as it is, it changes nothing
            built = Settings(_env_file=None, **{name.lower(): value})
            assert getattr(built, name.lower()) == Settings.model_fields[name.lower()].default


def test_every_setting_is_explained_in_its_comment():
    described = generator().field_comments((ROOT / "orchestrator/settings.py").read_text())
    assert sorted(name for name in Settings.model_fields if not described.get(name)) == []


def test_a_comment_is_found_inline_above_or_shared_by_the_next_field():
    source = """
class Settings:
    a: int = 1  # inline
    # above b
    # and more
    b: int = 2
    c: int = 3

    d: int = 4
"""
    assert generator().field_comments(source) == {
        "a": "inline",
        "b": "above b and more",
        "c": "above b and more",
        "d": "",
    }
