"""Validators shared by several endpoints: one transcript check for JSON bodies and multipart forms.

A transcript (``transcript`` of ``/v1/audio/voices`` and ``/v1/audio/analyze``, ``prompt_text`` of
``/v1/audio/speech``) is stripped; a blank one means "none" (Whisper transcribes the clip). It must
be at most ``MAX_TRANSCRIPT_CHARS`` characters and hold no control characters other than tab and
newline, nor lone surrogates (they cannot be stored as UTF-8). Multipart routes call
:func:`clean_transcript` with the app's setting; JSON schemas use the :data:`TranscriptText` type,
whose limit comes from the same setting through :func:`apply_transcript_limit`, an app-wide
dependency that runs before the body is validated.
"""

from __future__ import annotations

import unicodedata
from contextvars import ContextVar
from typing import Annotated

from fastapi import Request
from pydantic import BeforeValidator

from api.errors import InvalidRequestError

#: ``MAX_TRANSCRIPT_CHARS``'s default (what JSON bodies accepted before the setting existed).
DEFAULT_MAX_TRANSCRIPT_CHARS = 2000

_ALLOWED_CONTROLS = frozenset("\t\n\r")
_limit: ContextVar[int] = ContextVar("max_transcript_chars", default=DEFAULT_MAX_TRANSCRIPT_CHARS)


def transcript_problem(text: str, max_chars: int) -> str | None:
    """Why ``text`` (already stripped) is not an acceptable transcript, or ``None``."""
    if len(text) > max_chars:
        return f"The transcript is {len(text)} characters long; at most {max_chars} are accepted."
    for ch in text:
        if ch not in _ALLOWED_CONTROLS and unicodedata.category(ch) in ("Cc", "Cs"):
            return f"The transcript contains a control character (U+{ord(ch):04X})."
    return None


def clean_transcript(value: object, *, max_chars: int, param: str = "transcript") -> str | None:
    """The one transcript validator: stripped text, ``None`` when blank or absent, else a 400.

    Raises :class:`~api.errors.InvalidRequestError` naming ``param`` when the value is not text,
    is longer than ``max_chars`` after stripping, or holds a control character.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(f"'{param}' must be text.", param=param, code="invalid_transcript")
    text = value.strip()
    if not text:
        return None
    problem = transcript_problem(text, max_chars)
    if problem is not None:
        code = "transcript_too_long" if len(text) > max_chars else "invalid_transcript"
        raise InvalidRequestError(problem, param=param, code=code)
    return text


def current_transcript_limit() -> int:
    """The transcript limit of the request being handled (``MAX_TRANSCRIPT_CHARS``)."""
    return _limit.get()


async def apply_transcript_limit(request: Request) -> None:
    """App-wide dependency: make this request's JSON validation use the app's ``MAX_TRANSCRIPT_CHARS``.

    FastAPI resolves dependencies before it validates the body, in the request's own task, so the
    value set here is the one :data:`TranscriptText` reads.
    """
    settings = getattr(getattr(request.app.state, "services", None), "settings", None)
    _limit.set(int(getattr(settings, "max_transcript_chars", DEFAULT_MAX_TRANSCRIPT_CHARS)))


def _schema_transcript(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("must be a string")  # pydantic reports it with the field's name
    text = value.strip()
    if not text:
        return None
    problem = transcript_problem(text, current_transcript_limit())
    if problem is not None:
        raise ValueError(problem)
    return text


#: A transcript field of a JSON body: stripped, blank → ``None``, limited like multipart forms.
TranscriptText = Annotated[str | None, BeforeValidator(_schema_transcript)]
