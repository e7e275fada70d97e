"""List and mapping settings from the environment: JSON or the comma-separated form operators type;
a bad setting stops start-up with one line per variable, naming it and the expected form."""

from __future__ import annotations

import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.settings import Settings, _is_mapping, parse_env_collection, settings_error_lines

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env file


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("k1,k2", ["k1", "k2"]),
        ('["k1","k2"]', ["k1", "k2"]),
        (" k1 , k2 ,", ["k1", "k2"]),
        ("single", ["single"]),
        ("", []),
        ("  ", []),
        ('["a,b", "c"]', ["a,b", "c"]),  # JSON for items that hold a comma
    ],
)
def test_api_keys_forms(monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]) -> None:
    assert _settings(monkeypatch, API_KEYS=raw).api_keys == expected


def test_every_list_setting_takes_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    list_fields = [
        name
        for name, field in Settings.model_fields.items()
        if typing.get_origin(field.annotation) is list and typing.get_args(field.annotation) == (str,)
    ]
    assert {"api_keys", "admin_api_keys", "preload_models", "cors_origins"} <= set(list_fields)
    # fields whose items are validated get valid items of their kind
    samples = {"voice_url_allowed_networks": ("10.0.0.0/8", "192.168.0.0/16")}
    for name in list_fields:
        first, second = samples.get(name, ("one", "two"))
        monkeypatch.setenv(name.upper(), f"{first}, {second}")
    settings = Settings()
    for name in list_fields:
        assert getattr(settings, name) == list(samples.get(name, ("one", "two"))), name


def test_preload_and_cors(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings(
        monkeypatch, PRELOAD_MODELS="kokoro,zipvoice", CORS_ORIGINS="http://localhost:3000,https://a.example"
    )
    assert s.preload_models == ["kokoro", "zipvoice"]
    assert s.cors_origins == ["http://localhost:3000", "https://a.example"]  # colons are not separators


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("tts-1=zipvoice,tts-1-hd=zipvoice_distill", {"tts-1": "zipvoice", "tts-1-hd": "zipvoice_distill"}),
        (" a = b , c=d ", {"a": "b", "c": "d"}),
        ('{"a": "b"}', {"a": "b"}),
        ("", {}),
        ("a=", {"a": ""}),
    ],
)
def test_mapping_forms(monkeypatch: pytest.MonkeyPatch, raw: str, expected: dict[str, str]) -> None:
    assert _settings(monkeypatch, MODEL_ALIASES=raw).model_aliases == expected
    assert _settings(monkeypatch, VOICE_ALIASES=raw).voice_aliases == expected


def test_mapping_value_may_hold_equals(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _settings(monkeypatch, VOICE_ALIASES="alloy=af_heart+am_adam(0.5)").voice_aliases == {
        "alloy": "af_heart+am_adam(0.5)"
    }
    assert parse_env_collection("a=b=c", mapping=True) == {"a": "b=c"}


def test_dotenv_file_takes_commas(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("API_KEYS=k1,k2\nMODEL_ALIASES=x=kokoro\n")
    monkeypatch.delenv("API_KEYS", raising=False)
    monkeypatch.delenv("MODEL_ALIASES", raising=False)
    s = Settings()
    assert s.api_keys == ["k1", "k2"] and s.model_aliases == {"x": "kokoro"}


def test_init_values_are_untouched() -> None:
    assert Settings(api_keys=["a,b"]).api_keys == ["a,b"]


def test_is_mapping() -> None:
    assert _is_mapping(dict[str, str]) and _is_mapping(dict[str, str] | None)
    assert not _is_mapping(list[str]) and not _is_mapping(str)


@pytest.mark.parametrize(
    ("env", "var", "form"),
    [
        ({"MODEL_ALIASES": "a,b"}, "MODEL_ALIASES", "name=value pairs"),
        ({"API_KEYS": '["unterminated'}, "API_KEYS", "comma-separated list"),
        ({"MAX_QUEUE": "many"}, "MAX_QUEUE", "an integer"),
        ({"ENGINE": "gpu"}, "ENGINE", "one of auto, torch, onnx, trt"),
        ({"ALLOW_DOWNLOADS": "perhaps"}, "ALLOW_DOWNLOADS", "true or false"),
    ],
)
def test_error_lines_name_the_variable_and_form(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], var: str, form: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    lines = settings_error_lines(info.value, Settings)
    assert len(lines) == 1
    assert lines[0].startswith(f"invalid {var}:") and form in lines[0]
    assert "\n" not in lines[0]


def test_error_lines_never_echo_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_API_KEYS", '["sk-secret-123"')
    with pytest.raises(ValidationError) as info:
        Settings()
    (line,) = settings_error_lines(info.value, Settings)
    assert "ADMIN_API_KEYS" in line and "sk-secret-123" not in line


def _serve(env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k.isupper() and k not in ("API_KEYS", "MAX_QUEUE")}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "--port", "0"],
        cwd=REPO_ROOT,
        env={**full, **env, "VOICES_DIR": str(tmp / "v"), "CACHE_DIR": str(tmp / "c")},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bad_settings_exit_with_one_line_each(tmp_path: Path) -> None:
    result = _serve({"MAX_QUEUE": "lots", "MODEL_ALIASES": "tts-1"}, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert any("MAX_QUEUE" in line and "an integer" in line for line in lines)
    assert any("MODEL_ALIASES" in line and "a=b,c=d" in line for line in lines)
    assert all(line.startswith("zipvoice-server: invalid ") for line in lines)
