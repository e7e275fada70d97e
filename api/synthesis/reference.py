"""Reference clips done right: clean-up, Whisper transcript when none is given, quality report.

Used by voice registration (once, stored with the voice) and by cloning requests with ad-hoc
clips (once per clip: results are cached by the clip's digest, in bounded LRU caches).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from api.audio.clip import prepare_reference
from api.audio.digest import audio_digest
from api.audio.quality import QualityReport, analyze_clip, quality_headers
from api.engines.base import ReferenceVoice
from api.errors import APIError
from api.lru import LRUCache
from api.settings import Settings
from api.transcribe.base import Transcript
from api.transcribe.cache import CachedTranscriber

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedReference:
    samples: Any  # float32 (1, n), 24 kHz
    sample_rate: int
    transcript: str | None
    transcript_source: str | None
    quality: dict[str, Any]
    report: QualityReport


class ReferencePrep:
    def __init__(self, settings: Settings, transcriber: CachedTranscriber | None) -> None:
        self.settings = settings
        self.transcriber = transcriber
        self._prepared: LRUCache[str, PreparedReference] = LRUCache(max(1, settings.prompt_cache_size))
        self._reports: LRUCache[str, QualityReport] = LRUCache(max(1, settings.prompt_cache_size * 4))

    def _whisper(self, voice: ReferenceVoice) -> Transcript | None:
        if self.transcriber is None:
            return None
        try:
            return self.transcriber.transcribe(voice.samples, voice.sample_rate, digest=voice.digest)
        except APIError as exc:  # transcriber unavailable (no model offline…): carry on without
            log.warning("transcription unavailable: %s", exc.message)
            return None

    def prepare(self, voice: ReferenceVoice) -> PreparedReference:
        """Clean the clip, fill in the transcript (Whisper when none), and score it (blocking)."""
        cached = self._prepared.get(voice.digest + "|" + (voice.transcript or ""))
        if cached is not None:
            return cached
        whisper = self._whisper(voice)
        given = voice.transcript
        clip = prepare_reference(
            voice.samples,
            voice.sample_rate,
            transcript=given,
            segments=whisper.segments if whisper is not None else None,
            max_seconds=self.settings.max_prompt_seconds,
        )
        transcript = clip.transcript
        if not clip.transcript_aligned and self.transcriber is not None:
            kept_clip = replace(
                voice,
                samples=clip.samples,
                sample_rate=clip.sample_rate,
                digest=audio_digest(clip.samples, clip.sample_rate),
            )
            kept = self._whisper(kept_clip)
            if kept is not None and given is None:
                transcript = kept.text.strip()
        if given is not None:
            source = voice.transcript_source or "given"
        elif transcript:
            source = "whisper"
        else:
            source = None
        report = analyze_clip(
            voice.samples,
            voice.sample_rate,
            transcript=given,
            whisper_transcript=whisper.text.strip() if whisper is not None else None,
        )
        prepared = PreparedReference(
            clip.samples, clip.sample_rate, transcript or None, source, report.to_dict(), report
        )
        self._prepared.put(voice.digest + "|" + (given or ""), prepared)
        self._reports.put(voice.digest, report)
        return prepared

    def for_request(self, voice: ReferenceVoice, channels: int = 1) -> ReferenceVoice:
        """The voice as the engine should get it: registered voices as stored, ad-hoc clips prepared.

        Multi-channel engines (dialog stereo: one speaker per channel) get the clip unchanged; only a
        missing transcript is filled in.
        """
        if voice.source == "registered" and voice.transcript:
            return voice
        if channels > 1:
            if voice.transcript:
                return voice
            whisper = self._whisper(voice)
            text = whisper.text.strip() if whisper is not None else ""
            return replace(voice, transcript=text or None, transcript_source="whisper" if text else None)
        prepared = self.prepare(voice)
        return replace(
            voice,
            samples=prepared.samples,
            sample_rate=prepared.sample_rate,
            transcript=prepared.transcript,
            transcript_source=prepared.transcript_source,  # type: ignore[arg-type]
        )

    def headers(self, voice: ReferenceVoice) -> dict[str, str]:
        """Quality and transcript headers for a cloning response."""
        report = self._reports.get(voice.digest)
        if report is None:
            report = analyze_clip(voice.samples, voice.sample_rate, transcript=voice.transcript)
            self._reports.put(voice.digest, report)
        headers = quality_headers(report)
        if voice.transcript:
            from urllib.parse import quote

            headers["X-Prompt-Transcript"] = quote(voice.transcript, safe="")
            source = voice.transcript_source
            headers["X-Prompt-Transcript-Source"] = "whisper" if source == "whisper" else "given"
        return headers
