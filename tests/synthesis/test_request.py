"""``SpeechJob``, the pipeline's domain request, and the route's one conversion into it."""

from __future__ import annotations

import dataclasses

import pytest

from api.routes.speech import speech_job
from api.schemas.speech import SpeechRequest
from api.synthesis.request import SpeechJob


def test_a_job_is_frozen_and_defaults_to_a_streamed_mp3() -> None:
    job = SpeechJob(model="tts-1", text="Hi.", voice="alloy")
    assert (job.response_format, job.speed, job.streaming, job.owner, job.admin) == (
        "mp3",
        1.0,
        True,
        None,
        False,
    )
    assert job.num_steps is None and job.priority is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.text = "changed"  # type: ignore[misc]


def test_the_route_maps_every_field() -> None:
    body = SpeechRequest.model_validate(
        {
            "model": "zipvoice",
            "input": "Hello.",
            "voice": {"id": "my-voice"},
            "response_format": "flac",
            "speed": 1.25,
            "stream_format": "sse",
            "prompt_text": "The prompt.",
            "seed": 3,
            "lang": "en-us",
            "num_steps": 9,
            "guidance_scale": 2.5,
            "t_shift": 0.6,
            "priority": "quality",
        }
    )
    job = speech_job(body, "ns", True)
    assert job == SpeechJob(
        model="zipvoice",
        text="Hello.",
        voice="my-voice",  # {"id"} → the string
        response_format="flac",
        speed=1.25,
        seed=3,
        lang="en-us",
        num_steps=9,
        guidance_scale=2.5,
        t_shift=0.6,
        priority="quality",
        prompt_text="The prompt.",
        owner="ns",
        admin=True,
        streaming=True,
    )
    # every job field but ``streaming`` comes from the request or the caller
    assert {f.name for f in dataclasses.fields(SpeechJob)} - {"streaming"} <= set(dataclasses.asdict(job))
