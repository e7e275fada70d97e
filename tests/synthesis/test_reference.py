"""``ReferencePrep`` with a fake transcriber: clean-up, the transcript (given, stored or Whisper's),
multi-channel clips, an unavailable transcriber, and the per-clip cache."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from api.audio.digest import audio_digest
from api.engines.base import ReferenceVoice
from api.errors import ServiceUnavailableError
from api.settings import Settings
from api.synthesis.reference import ReferencePrep
from api.transcribe.cache import CachedTranscriber

from .fakes import FakeTranscriber, speechlike


def _clip(transcript: str | None = None, channels: int = 1, seconds: float = 3.0) -> ReferenceVoice:
    samples = speechlike(seconds, 16000, channels)
    return ReferenceVoice(
        samples,
        16000,
        transcript,
        audio_digest(samples, 16000),
        "base64",
        transcript_source="given" if transcript else None,
    )


def _prep(fake: FakeTranscriber | None = None, **kw: object) -> ReferencePrep:
    settings = Settings(allow_downloads=False, **kw)  # type: ignore[arg-type]
    return ReferencePrep(settings, CachedTranscriber(fake) if fake is not None else None)  # type: ignore[arg-type]


def test_an_ad_hoc_clip_is_cleaned_and_transcribed() -> None:
    fake = FakeTranscriber("Hello from the clip.")
    voice = _prep(fake).for_request(_clip())
    assert voice.sample_rate == 24000 and voice.samples.shape[0] == 1
    assert voice.transcript == "Hello from the clip." and voice.transcript_source == "whisper"
    assert fake.calls >= 1


def test_a_given_transcript_is_kept() -> None:
    fake = FakeTranscriber("Something else.")
    voice = _prep(fake).for_request(_clip("The words I said."))
    assert voice.transcript == "The words I said." and voice.transcript_source == "given"


def test_a_registered_voice_with_a_transcript_is_used_as_stored() -> None:
    fake = FakeTranscriber()
    stored = replace(_clip("Stored words."), source="registered", transcript_source="stored")
    assert _prep(fake).for_request(stored) is stored
    assert fake.calls == 0


def test_a_stereo_engine_gets_the_clip_unchanged_with_a_transcript() -> None:
    fake = FakeTranscriber("Two voices.")
    clip = _clip(channels=2)
    voice = _prep(fake).for_request(clip, channels=2)
    assert voice.samples is clip.samples and voice.sample_rate == 16000
    assert voice.transcript == "Two voices." and voice.transcript_source == "whisper"
    given = _clip("Given.", channels=2)
    assert _prep(fake).for_request(given, channels=2) is given


def test_an_unavailable_transcriber_leaves_no_transcript_and_no_error() -> None:
    fake = FakeTranscriber(error=ServiceUnavailableError("no whisper offline"))
    voice = _prep(fake).for_request(_clip())
    assert voice.transcript is None and voice.transcript_source is None
    assert _prep(None).for_request(_clip()).transcript is None


def test_a_clip_is_prepared_once_and_its_report_gives_the_headers() -> None:
    fake = FakeTranscriber("Once.")
    prep, clip = _prep(fake), _clip()
    first = prep.prepare(clip)
    calls = fake.calls
    assert prep.prepare(clip) is first and fake.calls == calls
    headers = prep.headers(prep.for_request(clip))
    assert headers["X-Prompt-Transcript"] == "Once." and headers["X-Prompt-Transcript-Source"] == "whisper"


def test_a_long_clip_is_cut_to_the_prompt_limit() -> None:
    voice = _prep(FakeTranscriber(), max_prompt_seconds=4.0).for_request(_clip(seconds=9.0))
    assert voice.samples.shape[-1] / voice.sample_rate <= 4.0 + 1e-6
    assert np.isfinite(voice.samples).all()
