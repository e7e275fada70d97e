"""The web player, end to end: Debian's Chromium (Playwright, sync API) against the real server.

Needs ``/usr/bin/chromium`` (``scripts/install_browser.sh``; override with ``CHROMIUM_PATH``) and
the ``playwright`` Python package; Playwright's own browser downloads are never used. Without a
browser the tests skip with the reason, except under CI (``CI=true``), where that is a failure.

Screenshots go to ``test-output/`` (gitignored); their paths are printed and recorded as
junit properties.
"""

from __future__ import annotations

import math
import os
import struct
import uuid
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import REPO_ROOT, ServerProcess

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
OUTPUT_DIR = REPO_ROOT / "test-output"
API_KEY = "sk-web-player-test"

PLAYER_HAS_AUDIO = """() => {
  const a = document.getElementById('player');
  return a.dataset.state === 'done' && a.readyState >= 1 && Number.isFinite(a.duration) && a.duration > 0;
}"""


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if _under_ci():
        pytest.fail(f"{reason} (required under CI; run scripts/install_browser.sh)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        _unavailable(f"Chromium not found at {CHROMIUM}: run scripts/install_browser.sh or set CHROMIUM_PATH")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright Python package is not installed")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real server with its default configuration (Kokoro from the offline assets)."""
    env = {"MAX_CONCURRENCY": "1", "MAX_QUEUE": "8", "WHISPER_MODEL": "tiny.en"}  # tiny.en: caption timings
    proc = ServerProcess(env, tmp_path_factory.mktemp("web-server"))
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


class PageErrors:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def attach(self, page: Any) -> None:
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on(
            "console",
            lambda msg: self.errors.append(f"console.error: {msg.text}") if msg.type == "error" else None,
        )

    def relevant(self) -> list[str]:
        # Failed fetches are logged by the browser as console errors; the page reports those itself.
        return [e for e in self.errors if "Failed to load resource" not in e]


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    errors = PageErrors()
    errors.attach(pg)
    pg.page_errors = errors
    try:
        yield pg
    finally:
        context.close()


def _open(page: Any, base_url: str) -> None:
    page.goto(base_url + "/web/")
    page.wait_for_selector("body[data-ready='true']")


def _screenshot(page: Any, name: str, record_property: Any) -> Path:
    OUTPUT_DIR.mkdir(exist_ok=True)
    path = OUTPUT_DIR / name
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    record_property(f"screenshot:{name}", str(path))
    return path


def _make_wav(path: Path, seconds: float = 2.0, rate: int = 24000) -> Path:
    """A speech-like test clip: a harmonic tone (140 Hz + overtones) with a syllable-rate envelope."""
    frames = bytearray()
    for i in range(int(seconds * rate)):
        t = i / rate
        env = 0.35 + 0.65 * abs(math.sin(math.pi * 4 * t))  # ~4 'syllables' a second
        fade = min(1.0, t / 0.05, (seconds - t) / 0.05)
        x = sum(math.sin(2 * math.pi * 140 * k * t) / k for k in range(1, 6))
        frames += struct.pack("<h", int(max(-1.0, min(1.0, 0.25 * env * fade * x)) * 32767))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return path


def _choose_voice(page: Any, voice: str) -> None:
    options = page.eval_on_selector_all("#voice option", "els => els.map(e => e.value)")
    if voice in options:
        page.select_option("#voice", voice)
    else:  # voice list route missing: type the preset's name instead
        page.fill("#voice-custom", voice)


def _synthesize(page: Any) -> float:
    page.click("#synthesize")
    page.wait_for_function(
        "() => ['done', 'error'].includes(document.getElementById('player').dataset.state)", timeout=120_000
    )
    assert page.is_hidden("#error"), page.inner_text("#error")
    page.wait_for_function(PLAYER_HAS_AUDIO, timeout=30_000)
    return float(page.eval_on_selector("#player", "a => a.duration"))


def test_synthesize_preset_voice(
    page: Any, web_server: ServerProcess, record_property: Any, tmp_path: Path
) -> None:
    _open(page, web_server.base_url)
    assert page.is_hidden("#error"), page.inner_text("#error")

    # The model picker lists the server's models; unavailable ones are disabled with the reason.
    models = httpx.get(web_server.base_url + "/v1/models").json()["data"]
    options = page.eval_on_selector_all(
        "#model option", "els => els.map(e => ({value: e.value, disabled: e.disabled, title: e.title}))"
    )
    assert [o["value"] for o in options] == [m["id"] for m in models]
    for opt, m in zip(options, models, strict=True):
        assert opt["disabled"] == (not m["available"])
        if not m["available"]:
            assert opt["title"] == (m["unavailable_reason"] or "unavailable")
    page.select_option("#model", "kokoro")
    assert page.is_hidden("#voice-source-field")  # preset model: no cloning sources

    text = "Hello! This is the web player speaking with a preset voice."
    page.fill("#input", text)
    _choose_voice(page, "jm_kumo")

    # Whole-file path (wav): duration from the real decoded metadata.
    page.select_option("#format", "wav")
    duration = _synthesize(page)
    print(f"wav: audio.duration = {duration:.2f} s")
    assert 1.0 < duration < 20.0, duration
    assert page.eval_on_selector("#player", "a => a.dataset.mode") == "blob"
    href = page.get_attribute("#download", "href")
    assert href and href.startswith("blob:")
    assert page.get_attribute("#download", "download") == "speech.wav"

    # mp3: streamed through MediaSource where Chromium supports audio/mpeg, else the whole blob.
    page.select_option("#format", "mp3")
    duration_mp3 = _synthesize(page)
    mode = page.eval_on_selector("#player", "a => a.dataset.mode")
    print(f"mp3 ({mode}): audio.duration = {duration_mp3:.2f} s")
    assert 1.0 < duration_mp3 < 20.0, duration_mp3
    assert abs(duration_mp3 - duration) < 1.0, (duration_mp3, duration)
    assert "Done" in page.inner_text("#status")

    # A faster speed gives shorter audio.
    page.select_option("#format", "wav")
    page.fill("#speed", "2")
    page.dispatch_event("#speed", "input")
    assert page.inner_text("#speed-out") == "2.00×"
    duration_fast = _synthesize(page)
    assert duration_fast < duration * 0.8, (duration_fast, duration)

    _screenshot(page, "web-player.png", record_property)
    page.set_viewport_size({"width": 390, "height": 844})  # phone-sized
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    _screenshot(page, "web-player-phone.png", record_property)
    assert not page.page_errors.relevant(), page.page_errors.relevant()


def test_captions_highlight_the_spoken_word_and_download(
    page: Any, web_server: ServerProcess, record_property: Any
) -> None:
    _require_route(web_server.base_url, "POST", "/v1/audio/speech/captioned")
    _open(page, web_server.base_url)
    page.select_option("#model", "kokoro")
    text = "Captions follow the voice. Every word lights up in turn."
    page.fill("#input", text)
    _choose_voice(page, "jm_kumo")
    page.select_option("#format", "wav")
    page.check("#captions")
    duration = _synthesize(page)
    assert page.is_visible("#caption-panel")
    words = page.eval_on_selector_all(
        "#caption-text .word", "els => els.map(e => [e.textContent, +e.dataset.start, +e.dataset.end])"
    )
    assert [w[0] for w in words] == text.split()
    assert all(0 <= start <= end <= duration + 0.05 for _, start, end in words)
    # as the audio plays, the word being spoken is the one highlighted
    page.eval_on_selector("#player", "a => a.pause()")
    for index in (0, len(words) // 2, len(words) - 1):
        _, start, end = words[index]
        page.eval_on_selector("#player", f"a => {{ a.currentTime = {(start + end) / 2}; }}")
        page.wait_for_function(
            f"() => document.querySelector('#caption-text .word.current')?.dataset.index === '{index}'"
        )
        assert page.eval_on_selector_all("#caption-text .word.current", "els => els.length") == 1
    # downloads: SRT and WebVTT text of the same words
    srt = page.evaluate("async () => (await fetch(document.getElementById('download-srt').href)).text()")
    vtt = page.evaluate("async () => (await fetch(document.getElementById('download-vtt').href)).text()")
    assert srt.startswith("1\n") and " --> " in srt and "," in srt.split("\n")[1]
    assert vtt.startswith("WEBVTT") and "." in vtt.split("\n")[2] and " --> " in vtt
    spoken = " ".join(line for line in srt.splitlines() if line and "-->" not in line and not line.isdigit())
    assert spoken.split() == text.split()
    _screenshot(page, "web-player-captions.png", record_property)
    assert not page.page_errors.relevant(), page.page_errors.relevant()


def test_errors_are_shown(page: Any, web_server: ServerProcess) -> None:
    _open(page, web_server.base_url)
    page.select_option("#model", "kokoro")
    _choose_voice(page, "jm_kumo")

    # Empty input: a clear message, no request.
    page.fill("#input", "   ")
    page.click("#synthesize")
    page.wait_for_selector("#error:not([hidden])")
    assert "Enter some text" in page.inner_text("#error")
    assert page.evaluate("document.activeElement.id") == "input"

    # A server-side error: the envelope's error.message is shown.
    too_long = "word " * 1000
    direct = httpx.post(
        web_server.base_url + "/v1/audio/speech",
        json={"model": "kokoro", "input": too_long, "voice": "jm_kumo", "response_format": "wav"},
    )
    assert direct.status_code == 400
    message = direct.json()["error"]["message"]
    page.fill("#input", too_long)
    page.click("#synthesize")
    page.wait_for_function("() => document.getElementById('player').dataset.state === 'error'")
    assert message in page.inner_text("#error")

    # An unknown voice: the server's message again.
    page.fill("#input", "Hello.")
    page.fill("#voice-custom", "no_such_voice_here")
    page.click("#synthesize")
    page.wait_for_function("() => document.getElementById('player').dataset.state === 'error'")
    assert page.inner_text("#error").strip()
    assert "Request failed" not in page.inner_text("#error")


def _require_route(base: str, method: str, path: str) -> None:
    r = httpx.request(method, base + path)
    err = r.json().get("error", {}) if r.status_code in (404, 405) else {}
    # no such path: Starlette's 404 "Not Found"; the path without this method: 405 method_not_allowed
    if (r.status_code == 404 and err.get("message") == "Not Found") or (
        r.status_code == 405 and err.get("code") == "method_not_allowed"
    ):
        pytest.fail(f"route missing on the server: {method} {path} -> {r.status_code}")


def test_analyze_clip(page: Any, web_server: ServerProcess, tmp_path: Path) -> None:
    _require_route(web_server.base_url, "POST", "/v1/audio/analyze")
    clip = _make_wav(tmp_path / "tone.wav")
    _open(page, web_server.base_url)
    page.set_input_files("#reg-file", str(clip))
    page.fill("#reg-transcript", "this is a test tone")
    page.click("#analyze")
    page.wait_for_function(
        "() => !document.getElementById('analysis').hidden || !document.getElementById('reg-error').hidden"
    )
    assert page.is_hidden("#reg-error"), page.inner_text("#reg-error")
    text = page.inner_text("#analysis")
    assert "Quality score" in text and "Length" in text
    assert not page.page_errors.relevant(), page.page_errors.relevant()


def test_register_list_delete_voice(
    page: Any, web_server: ServerProcess, tmp_path: Path, record_property: Any
) -> None:
    base = web_server.base_url
    _require_route(base, "GET", "/v1/audio/voices")
    clip = _make_wav(tmp_path / "tone.wav")
    name = f"web test {uuid.uuid4().hex[:8]}"
    _open(page, base)
    assert page.is_hidden("#error"), page.inner_text("#error")

    # Register it.
    page.set_input_files("#reg-file", str(clip))
    page.fill("#reg-transcript", "this is a test tone")
    page.fill("#reg-name", name)
    page.click("#register")
    page.wait_for_function(
        "n => [...document.querySelectorAll('#voices-list tr td:first-child')].some(td => td.textContent === n)"
        " || !document.getElementById('reg-error').hidden",
        arg=name,
    )
    assert page.is_hidden("#reg-error"), page.inner_text("#reg-error")
    assert "Registered" in page.inner_text("#reg-status")
    listed = httpx.get(base + "/v1/audio/voices").json()["data"]
    voice = next(v for v in listed if v.get("name") == name)
    assert voice["type"] == "registered"
    row = page.locator(f"#voices-list tr[data-voice-id='{voice['id']}']")
    assert row.count() == 1
    assert voice["id"] in row.inner_text()

    # A duplicate name is refused with the server's message (409).
    page.set_input_files("#reg-file", str(clip))
    page.fill("#reg-name", name)
    page.click("#register")
    page.wait_for_selector("#reg-error:not([hidden])")
    assert "Could not register" in page.inner_text("#reg-error")
    _screenshot(page, "web-player-voices.png", record_property)

    # Delete it.
    page.get_by_role("button", name=f"Delete voice {name}").click()
    page.wait_for_function(
        "id => !document.querySelector(`#voices-list tr[data-voice-id='${id}']`)", arg=voice["id"]
    )
    assert "Deleted" in page.inner_text("#reg-status")
    assert httpx.get(f"{base}/v1/audio/voices/{voice['id']}").status_code == 404
    assert page.is_hidden("#reg-error"), page.inner_text("#reg-error")
    assert not page.page_errors.relevant(), page.page_errors.relevant()


def test_api_key_field(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    server = ServerProcess({"API_KEYS": f'["{API_KEY}"]'}, tmp_path_factory.mktemp("web-auth"))
    try:
        server.wait_ready()
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(60_000)
        try:
            _open(page, server.base_url)  # /web itself is public
            page.wait_for_selector("#error:not([hidden])")
            assert "API key" in page.inner_text("#error")
            assert page.eval_on_selector_all("#model option", "els => els.length") == 0

            page.fill("#api-key", API_KEY)
            page.dispatch_event("#api-key", "change")
            page.wait_for_function("() => document.querySelectorAll('#model option').length > 0")
            page.wait_for_selector("#error[hidden]", state="attached")
            assert page.evaluate("localStorage.getItem('zipvoice.apiKey')") == API_KEY

            # The key survives a reload and is sent with the speech request.
            page.reload()
            page.wait_for_selector("body[data-ready='true']")
            assert page.input_value("#api-key") == API_KEY
            page.select_option("#model", "kokoro")
            _choose_voice(page, "jm_kumo")
            page.select_option("#format", "wav")
            page.fill("#input", "Authorized.")
            assert _synthesize(page) > 0.2
        finally:
            context.close()
    finally:
        server.stop()
