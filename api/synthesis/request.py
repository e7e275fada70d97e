"""The domain request of the speech pipeline: what to say, how, and for whom.

A :class:`SpeechJob` is built at the edge (``api/routes/speech.py`` from the HTTP schema, ``zipvoice-synth``
from its arguments) and is all :meth:`api.synthesis.service.SpeechService.start` needs. It knows
nothing of HTTP (``synthesis/`` never imports ``api/schemas/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from api.engines.base import Priority


@dataclass(frozen=True)
class SpeechJob:
    """One speech request. ``None`` sampler fields mean: the engine's declared default."""

    #: an OpenAI model name (``tts-1``, mapped by ``MODEL_ALIASES``) or a backend name
    model: str
    #: the text to speak
    text: str
    #: a voice string: preset or registered name/id, alias, ``file+``/``url+``/``base64+``/``data:`` source
    voice: str
    response_format: str = "mp3"
    speed: float = 1.0
    seed: int | None = None
    lang: str | None = None
    num_steps: int | None = None
    guidance_scale: float | None = None
    t_shift: float | None = None
    #: pick model, steps and guidance from the profiles the engines declare (explicit values win)
    priority: Priority | None = None
    #: transcript of a reference clip (cloning engines)
    prompt_text: str | None = None
    #: the caller's namespace (voices, quota, usage); ``None`` → the default namespace
    owner: str | None = None
    #: an admin caller sees voices in every namespace
    admin: bool = False
    #: streamed (the first clause is synthesized alone, for a quick first chunk) or whole
    streaming: bool = True
    #: ``text`` is plain text or SSML (:mod:`api.text.ssml`); ``None``: SSML when it starts with ``<speak``
    input_format: Literal["text", "ssml"] | None = None
    #: time every word of the input in the output (captioned speech): chunks carry their words
    timestamps: bool = False
