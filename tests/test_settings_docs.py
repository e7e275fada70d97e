"""Every setting has a docstring and a row in the README's settings table."""

from pathlib import Path

from api.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no docstring"
        assert f"| `{name.upper()}` |" in README, f"{name.upper()} missing from the README table"
