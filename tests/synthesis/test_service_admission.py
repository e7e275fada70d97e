"""``SpeechService.prepare_voice`` then ``plan``: a cloning voice is resolved under a reference slot
(429 when that queue is full) and holds no synthesis slot; a preset voice takes no reference slot."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Literal

import numpy as np
import pytest

from api.engines.base import AudioChunk, Availability, PresetVoice, ReferenceVoice, SynthesisOptions, Voice
from api.engines.registry import EngineRegistry, EngineSpec
from api.errors import RateLimitError
from api.schemas.speech import SpeechRequest
from api.settings import Settings
from api.synthesis.limiter import ReferenceLimiter, SynthesisLimiter
from api.synthesis.reference import ReferencePrep
from api.synthesis.service import SpeechService


class FakeEngine:
    sample_rate = 24000
    channels = 1
    max_chunk_chars = 400
    whole_text = False

    def __init__(self, name: str, kind: Literal["preset", "clone"]) -> None:
        self.name, self.voice_kind = name, kind

    def availability(self) -> Availability:
        return Availability(True)

    def load(self) -> None:
        pass

    def preset_voices(self) -> list[str]:
        return ["af_alloy"] if self.voice_kind == "preset" else []

    def synthesize(self, chunks: list[str], voice: Voice, options: SynthesisOptions) -> Iterator[AudioChunk]:
        for _ in chunks:
            yield AudioChunk(np.zeros((1, 240), dtype=np.float32), self.sample_rate)


class SlowResolver:
    """Stands for a slow url+ fetch: blocks until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def resolve(
        self, spec: str, *, owner: str | None = None, prompt_text: str | None = None, admin: bool = False
    ) -> Voice:
        self.entered.set()
        assert self.release.wait(10)
        clip = np.zeros((1, 24000), dtype=np.float32)
        return ReferenceVoice(clip, 24000, "Hello.", "d" * 64, "registered", transcript_source="stored")


def _service(resolver: SlowResolver) -> SpeechService:
    settings = Settings(allow_downloads=False)
    specs = {
        name: EngineSpec(name, lambda s, n=name, k=kind: FakeEngine(n, k), name)  # type: ignore[misc]
        for name, kind in (("clone", "clone"), ("preset", "preset"))
    }
    return SpeechService(settings, EngineRegistry(settings, specs), resolver, ReferencePrep(settings, None))


def test_reference_work_holds_a_reference_slot_not_a_synthesis_slot() -> None:
    resolver = SlowResolver()
    service = _service(resolver)

    async def scenario() -> None:
        refs, synth = ReferenceLimiter(1, 0), SynthesisLimiter(1, 0)
        clone = SpeechRequest(model="clone", voice="url+https://example.com/a.wav", input="Hi there.")
        slow = asyncio.create_task(service.prepare_voice(clone, reference_slots=refs))
        while not resolver.entered.is_set():
            await asyncio.sleep(0.01)
        assert refs.in_flight == 1 and synth.in_flight == 0

        # The reference queue is full: another clone is refused at once, with Retry-After.
        with pytest.raises(RateLimitError) as info:
            await service.prepare_voice(clone, reference_slots=refs)
        assert info.value.status_code == 429 and "Retry-After" in info.value.headers

        # A preset voice needs no reference slot, and the synthesis slot is free.
        preset = SpeechRequest(model="preset", voice="af_alloy", input="Hello. World.")
        ready = await service.prepare_voice(preset, reference_slots=refs)
        assert ready.voice == PresetVoice("af_alloy")
        async with synth.slot():
            plan = await service.plan(preset, prepared=ready, streaming=True)
        assert plan.backend == "preset" and plan.chunks == ["Hello.", "World."]

        resolver.release.set()
        prepared = await slow
        assert isinstance(prepared.voice, ReferenceVoice) and refs.in_flight == 0
        async with synth.slot():
            plan = await service.plan(clone, prepared=prepared)
        assert service.collect(plan).samples.shape == (1, 240)

    asyncio.run(scenario())
