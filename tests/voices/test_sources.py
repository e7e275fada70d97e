"""VoiceResolver: every source form, and the rules that keep each one safe."""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import os
import sys
import threading
import wave
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from api.engines.base import PresetVoice, ReferenceVoice
from api.errors import (
    APIError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
)
from api.settings import Settings
from api.voices.safe_fetch import IPAddress, SafeFetcher
from api.voices.sources import VoiceResolver, audio_digest
from api.voices.store import FileVoiceStore


def wav_bytes(seconds: float = 0.25, rate: int = 16000, channels: int = 1) -> bytes:
    n = int(seconds * rate)
    t = np.arange(n) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(x[:, None], channels, axis=1).tobytes())
    return buf.getvalue()


WAV = wav_bytes()


def stub_decoder(
    data: bytes, *, max_seconds: float, max_decoded_bytes: int | None = None
) -> tuple[np.ndarray, int]:
    """Stands in for decode_audio: reads 16-bit WAV with the stdlib (keeps these tests independent)."""
    with wave.open(io.BytesIO(data), "rb") as w:
        ch, rate = w.getnchannels(), w.getframerate()
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    samples = frames.reshape(-1, ch).T.astype(np.float32) / 32768.0
    if samples.shape[1] / rate > max_seconds:
        raise PayloadTooLargeError("too long")
    return samples, rate


def settings(**kw: Any) -> Settings:
    kw.setdefault("max_voice_bytes", 100_000)
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """root/ with voices, plus a secret next to it that traversal would reach."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "voice.wav").write_bytes(WAV)
    (root / "sub" / "nested.wav").write_bytes(WAV)
    (tmp_path / "secret.wav").write_bytes(WAV)
    (outside / "secret.wav").write_bytes(WAV)
    (root / "big.wav").write_bytes(b"\0" * 200_000)
    (tmp_path / "bigsecret.wav").write_bytes(b"\0" * 200_000)
    (root / "escape.wav").symlink_to(tmp_path / "secret.wav")
    (root / "escape_rel.wav").symlink_to("../secret.wav")
    (root / "sub" / "escape_up.wav").symlink_to("../../secret.wav")
    (root / "escape_dir").symlink_to(outside)
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    (root / "alias.wav").symlink_to("voice.wav")
    (root / "sub" / "alias_up.wav").symlink_to("../voice.wav")
    (root / "abs_inside.wav").symlink_to(root / "sub" / "nested.wav")
    os.mkfifo(root / "pipe.wav")
    return {"root": root, "tmp": tmp_path}


def resolver(root: Path | None, **kw: Any) -> VoiceResolver:
    return VoiceResolver(settings(voice_file_root=root, **kw), decoder=stub_decoder)


# --- file+ ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["voice.wav", "sub/nested.wav", "./sub//nested.wav", "alias.wav", "sub/alias_up.wav", "abs_inside.wav"],
)
def test_file_voice_inside_root(layout: dict[str, Path], path: str) -> None:
    voice = resolver(layout["root"]).resolve(f"file+{path}", prompt_text="hello")
    assert isinstance(voice, ReferenceVoice)
    assert voice.source == "file" and voice.transcript == "hello" and voice.transcript_source == "given"
    assert voice.sample_rate == 16000 and voice.samples.shape == (1, 4000)


TRAVERSALS = [
    "../secret.wav",
    "sub/../../secret.wav",
    "./../secret.wav",
    "%2e%2e/secret.wav",
    "%2e%2e%2fsecret.wav",
    "..%2fsecret.wav",
    "%252e%252e/secret.wav",
    "..\\secret.wav",
    "sub\\..\\..\\secret.wav",
    "voice.wav\x00",
    "\x00../secret.wav",
    "escape.wav",
    "escape_rel.wav",
    "sub/escape_up.wav",
    "escape_dir/secret.wav",
    "loop1",
    "pipe.wav",
    "sub",
    "sub/",
    ".",
    "",
    "missing.wav",
    "../bigsecret.wav",
    "voice.wav/",
    "voice.wav/x",
]


@pytest.fixture
def opened_paths() -> Iterator[list[str]]:
    """Every path Python opens while active (via the 'open' audit event)."""
    seen: list[str] = []
    _AUDIT.append(seen)
    yield seen
    _AUDIT.remove(seen)


_AUDIT: list[list[str]] = []


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _AUDIT and args and isinstance(args[0], str | bytes | os.PathLike):
        for sink in _AUDIT:
            sink.append(os.fsdecode(args[0]))


sys.addaudithook(_hook)


@pytest.mark.parametrize("path", TRAVERSALS)
def test_file_traversal_forms_get_the_same_404(
    layout: dict[str, Path], path: str, opened_paths: list[str]
) -> None:
    r = resolver(layout["root"])
    with pytest.raises(NotFoundError) as missing:
        r.resolve("file+missing.wav")
    with pytest.raises(APIError) as info:
        r.resolve(f"file+{path}")
    assert info.value.status_code == 404
    assert info.value.body() == missing.value.body()
    assert "secret" not in info.value.message and str(layout["tmp"]) not in info.value.message
    assert not any("secret" in p for p in opened_paths), opened_paths  # nothing outside was opened


def test_audit_hook_sees_opens(layout: dict[str, Path], opened_paths: list[str]) -> None:
    """The 'nothing outside was opened' check above is real: the hook records os.open names."""
    resolver(layout["root"]).resolve("file+sub/nested.wav")
    assert "nested.wav" in opened_paths


def test_absolute_paths_are_404_even_inside_the_root(layout: dict[str, Path]) -> None:
    r = resolver(layout["root"])
    for p in (str(layout["tmp"] / "secret.wav"), str(layout["root"] / "voice.wav"), "/etc/passwd"):
        with pytest.raises(NotFoundError) as info:
            r.resolve(f"file+{p}")
        assert (
            info.value.body()
            == NotFoundError("Voice file not found.", param="voice", code="voice_file_not_found").body()
        )


def test_file_oversize_is_413_before_reading(
    layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        reads.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", counting_read)
    with pytest.raises(PayloadTooLargeError) as info:
        resolver(layout["root"]).resolve("file+big.wav")
    assert info.value.status_code == 413
    assert reads == []


def test_file_root_unset_is_403(layout: dict[str, Path]) -> None:
    with pytest.raises(PermissionDeniedError) as info:
        resolver(None).resolve("file+voice.wav")
    assert info.value.status_code == 403


def test_file_root_missing_is_404(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        resolver(tmp_path / "nope").resolve("file+voice.wav")


# --- base64 / data: ---------------------------------------------------------------------------


def test_base64_voice() -> None:
    voice = resolver(None).resolve("base64+" + base64.b64encode(WAV).decode())
    assert isinstance(voice, ReferenceVoice) and voice.source == "base64"
    assert voice.transcript is None and voice.transcript_source is None
    assert voice.digest == audio_digest(voice.samples, voice.sample_rate)


@pytest.mark.parametrize(
    "mime", ["audio/wav", "audio/x-wav", "AUDIO/WAV", "audio/wav;codecs=1", " audio/webm "]
)
def test_data_url_voice(mime: str) -> None:
    voice = resolver(None).resolve(f"data:{mime};base64," + base64.b64encode(WAV).decode())
    assert isinstance(voice, ReferenceVoice) and voice.samples.shape == (1, 4000)


def test_base64_oversize_is_413_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = binascii.a2b_base64

    def spy(*a: Any, **k: Any) -> bytes:
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(binascii, "a2b_base64", spy)
    big = "A" * (4 * 100_000 // 3 + 8)
    for spec in ("base64+" + big, "data:audio/wav;base64," + big, "base64+" + "!" * 1_000_000):
        with pytest.raises(PayloadTooLargeError):
            resolver(None).resolve(spec)
    assert calls == []


def test_base64_just_over_the_cap_is_413() -> None:
    payload = base64.b64encode(b"\0" * 100_001).decode()
    with pytest.raises(PayloadTooLargeError):
        resolver(None).resolve("base64+" + payload)


@pytest.mark.parametrize(
    "payload",
    [
        "not base64!",
        "QUJD\nREVG",
        "QUJDRA",
        "QUJD====",
        "QU JD",
        "-_-_",
        "QUJDRA==QUJD",
        "=QUJD",
        "é",
        "QUJD\x00",
    ],
)
def test_malformed_base64_is_400(payload: str) -> None:
    for spec in ("base64+" + payload, "data:audio/wav;base64," + payload):
        with pytest.raises(InvalidRequestError) as info:
            resolver(None).resolve(spec)
        assert info.value.status_code == 400


def test_empty_base64_is_400() -> None:
    with pytest.raises(InvalidRequestError):
        resolver(None).resolve("base64+")


def test_data_url_rules() -> None:
    b64 = base64.b64encode(WAV).decode()
    with pytest.raises(InvalidRequestError):
        resolver(None).resolve("data:audio/wav," + b64)  # not base64
    with pytest.raises(InvalidRequestError):
        resolver(None).resolve("data:audio/wav;base64")  # no comma


@pytest.mark.parametrize(
    "mime",
    [
        "",
        "text/html",
        "application/octet-stream",
        "video/webm",
        "audio",
        "audio/",
        "audiox/wav",
        ";x=audio/wav",
    ],
)
def test_data_url_must_name_an_audio_media_type(mime: str) -> None:
    """A valid WAV payload is still refused when the data: URL does not say audio/*: 400, not 415."""
    spec = f"data:{mime};base64," + base64.b64encode(WAV).decode()
    with pytest.raises(InvalidRequestError) as info:
        resolver(None).resolve(spec)
    assert info.value.status_code == 400 and info.value.code == "invalid_data_url"
    assert info.value.param == "voice" and "audio/*" in info.value.message


# --- decode limits and digest -------------------------------------------------------------------


def test_decoder_gets_duration_and_size_caps() -> None:
    seen: dict[str, Any] = {}

    def spy(
        data: bytes, *, max_seconds: float, max_decoded_bytes: int | None = None
    ) -> tuple[np.ndarray, int]:
        seen.update(max_seconds=max_seconds, max_decoded_bytes=max_decoded_bytes)
        return stub_decoder(data, max_seconds=max_seconds)

    r = VoiceResolver(settings(max_reference_seconds=7.0), decoder=spy)
    r.resolve("base64+" + base64.b64encode(WAV).decode())
    assert seen["max_seconds"] == 7.0
    assert seen["max_decoded_bytes"] is not None and seen["max_decoded_bytes"] <= 7 * 192_000 * 2 * 4


def test_too_long_audio_is_413_with_real_decoder() -> None:
    pytest.importorskip("av")
    r = VoiceResolver(settings(max_reference_seconds=1.0, max_voice_bytes=1_000_000))
    ok = r.resolve("base64+" + base64.b64encode(wav_bytes(0.5)).decode())
    assert isinstance(ok, ReferenceVoice) and ok.samples.shape[1] == 8000
    with pytest.raises(PayloadTooLargeError):
        r.resolve("base64+" + base64.b64encode(wav_bytes(2.0)).decode())


def test_digest_depends_on_samples_and_rate() -> None:
    x = np.zeros((1, 100), np.float32)
    assert audio_digest(x, 16000) == audio_digest(x.copy(), 16000)
    assert audio_digest(x, 16000) != audio_digest(x, 24000)
    assert audio_digest(x, 16000) != audio_digest(x + 0.5, 16000)


# --- registered voices and presets ----------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> FileVoiceStore:
    return FileVoiceStore(tmp_path / "voices")


def test_registered_by_name_id_and_object(store: FileVoiceStore) -> None:
    samples, rate = stub_decoder(WAV, max_seconds=60)
    meta = store.create(
        "default", "narrator", samples, rate, transcript="stored text", transcript_source="whisper"
    )
    r = VoiceResolver(settings(), store, decoder=stub_decoder)
    for spec in ("narrator", meta.id, {"id": meta.id}, {"id": "narrator"}):
        voice = r.resolve(spec)
        assert isinstance(voice, ReferenceVoice)
        assert voice.source == "registered" and voice.voice_id == meta.id
        assert voice.transcript == "stored text" and voice.transcript_source == "stored"
    given = r.resolve("narrator", prompt_text="spoken words")
    assert isinstance(given, ReferenceVoice)
    assert given.transcript == "spoken words" and given.transcript_source == "given"
    assert given.digest == r.resolve(meta.id).digest  # type: ignore[union-attr]


def test_registered_voices_are_per_namespace(store: FileVoiceStore) -> None:
    samples, rate = stub_decoder(WAV, max_seconds=60)
    meta = store.create("kaaaa", "mine", samples, rate)
    r = VoiceResolver(settings(), store, decoder=stub_decoder)
    assert isinstance(r.resolve("mine", owner="kaaaa"), ReferenceVoice)
    assert r.resolve("mine", owner="kbbbb") == PresetVoice("mine")  # not visible: falls to presets
    with pytest.raises(NotFoundError):
        r.resolve(meta.id, owner="kbbbb")
    with pytest.raises(NotFoundError):
        r.resolve({"id": meta.id}, owner="kbbbb")
    assert isinstance(r.resolve(meta.id, owner="kbbbb", admin=True), ReferenceVoice)


def test_unknown_names_become_presets(store: FileVoiceStore) -> None:
    r = VoiceResolver(settings(), store, decoder=stub_decoder)
    assert r.resolve("af_heart") == PresetVoice("af_heart")
    assert r.resolve("af_heart+am_adam(0.3)") == PresetVoice("af_heart+am_adam(0.3)")
    with pytest.raises(NotFoundError):
        r.resolve("voice_AAAAAAAAAAAAAAAA")  # id-shaped: a missing registered voice, not a preset
    with pytest.raises(InvalidRequestError):
        r.resolve({"name": "x"})


# --- url+ -------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(WAV)))
        self.end_headers()
        self.wfile.write(WAV)


@pytest.fixture
def http_server() -> Iterator[ThreadingHTTPServer]:
    _Handler.hits = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_url_voice_uses_safe_fetch(http_server: ThreadingHTTPServer) -> None:
    port = http_server.server_address[1]
    loopback = ipaddress.ip_address("127.0.0.1")

    def allow_loopback(ip: IPAddress) -> bool:
        return ip == loopback

    fetch = SafeFetcher(
        max_bytes=100_000, timeout=5, resolver=lambda h, p: ["127.0.0.1"], address_policy=allow_loopback
    ).fetch
    voice = VoiceResolver(settings(), decoder=stub_decoder, fetcher=fetch).resolve(
        f"url+http://voices.test:{port}/a.wav"
    )
    assert isinstance(voice, ReferenceVoice) and voice.source == "url"
    assert _Handler.hits == ["/a.wav"]


def test_url_voice_default_fetcher_refuses_loopback(http_server: ThreadingHTTPServer) -> None:
    port = http_server.server_address[1]
    r = VoiceResolver(settings(), decoder=stub_decoder)  # production policy from settings
    for host in ("127.0.0.1", "2130706433", "localhost", "[::1]"):
        with pytest.raises(PermissionDeniedError):
            r.resolve(f"url+http://{host}:{port}/a.wav")
    assert _Handler.hits == []


def test_url_voice_allow_list_from_settings(http_server: ThreadingHTTPServer) -> None:
    port = http_server.server_address[1]
    r = VoiceResolver(settings(voice_url_allowed_hosts=["cdn.example.com"]), decoder=stub_decoder)
    with pytest.raises(PermissionDeniedError):
        r.resolve(f"url+http://other.example.com:{port}/a.wav")
    assert _Handler.hits == []
