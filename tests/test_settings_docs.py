"""Every setting has a docstring and a row in the README's settings table; every documented setting
(README table, compose files) is a real setting, and every setting is read by some code."""

import re
from pathlib import Path

from api.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _settings_section() -> str:
    start = README.index("## Settings")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_every_setting_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no docstring"
        assert f"| `{name.upper()}` |" in README, f"{name.upper()} missing from the README table"


def test_every_documented_setting_exists() -> None:
    fields = {n.upper() for n in Settings.model_fields}
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", _settings_section(), flags=re.M)
    assert rows, "the README settings table was not found"
    assert not sorted(set(rows) - fields), "README documents settings that do not exist"
    for compose in sorted((ROOT / "docker").glob("*/docker-compose.yml")):
        env = re.findall(r"^\s{6}([A-Z][A-Z0-9_]*):", compose.read_text(), flags=re.M)
        unknown = sorted(
            set(env)
            - fields
            - {
                "HF_HOME",
                "HF_ENDPOINT",
                "NVIDIA_VISIBLE_DEVICES",
                "POSTGRES_PASSWORD",
                "POSTGRES_USER",
                "POSTGRES_DB",
            }
        )
        assert not unknown, f"{compose.relative_to(ROOT)} passes unknown settings {unknown}"


def test_every_setting_is_read_by_code() -> None:
    sources = "\n".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "api").rglob("*.py") if p.name != "settings.py"
    )
    unread = [n for n in Settings.model_fields if not re.search(rf"\.{n}\b", sources)]
    assert not unread, f"settings no code reads: {unread}"
