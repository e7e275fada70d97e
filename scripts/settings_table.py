"""Print the settings table (markdown) from the Settings field docstrings: env var, default, meaning."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.settings import Settings


def _default(name: str) -> str:
    field = Settings.model_fields[name]
    if field.default_factory is not None:
        if name in ("voices_dir", "cache_dir", "web_dir"):
            return {
                "voices_dir": "per-user data dir /voices",
                "cache_dir": "per-user cache dir",
                "web_dir": "./web",
            }[name]
        value = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if isinstance(value, (dict, list)):
        text = json.dumps(value)
        return text if len(text) < 60 else text[:57] + "…"
    return "unset" if value is None else str(value)


def table() -> str:
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `{name.upper()}` | `{_default(name)}` | {(field.description or '').strip()} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
