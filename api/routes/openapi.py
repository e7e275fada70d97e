"""The OpenAPI document, made to tell the truth about errors and bodies.

FastAPI's generated document claims a 422 on every operation with parameters (the server maps
validation errors to 400, :mod:`api.errors`) and knows none of the errors the routes and the
services under them raise. :func:`install_openapi` replaces ``app.openapi`` with a builder that
post-processes the generated document:

* OpenAI's error envelope is a component schema, ``ErrorResponse``;
* every operation lists the statuses it can really return, from :data:`ROUTE_ERRORS` (the error
  types each route and the services under it raise, kept here next to each other rather than in
  every route decorator), plus what the middleware adds: 413 wherever a body is read (the body
  limit), 401 on non-public routes when API keys are set, and 400 wherever FastAPI validates;
* the auto-generated 422 and its ``HTTPValidationError``/``ValidationError`` schemas are removed;
* the bodies that routes read by hand are declared: ``POST /v1/audio/voices`` and
  ``POST /v1/audio/analyze`` take multipart (``file`` as binary audio, ``name``, ``transcript``)
  or JSON;
* ``/ready`` documents its own 503 body (not the envelope: load balancers read ``status``).

Methods a path does not serve get 405 with ``Allow`` (:mod:`api.errors`); that is a property of
the path, not of an operation, so it is not listed per operation.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from api.auth import PUBLIC_PATHS
from api.errors import (
    APIError,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UnsupportedMediaError,
)
from api.schemas.analysis import AnalyzeJSON
from api.schemas.voices import VoiceCreateJSON
from api.settings import Settings

ENVELOPE = "ErrorResponse"
_REF = {"$ref": f"#/components/schemas/{ENVELOPE}"}

#: What resolving and decoding a voice source can raise (api.voices.sources, safe_fetch, audio.decode):
#: a malformed source (400), file+ disabled or a url+ host refused (403), a missing registered voice or
#: file (404), too many bytes (413), audio that does not decode (415).
_VOICE_SOURCE: tuple[type[APIError], ...] = (
    InvalidRequestError,
    PermissionDeniedError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaError,
)
#: Reference preparation (api.synthesis.reference): its queue is bounded (429); Whisper and the
#: backends may be unavailable (503).
_PREPARE: tuple[type[APIError], ...] = (RateLimitError, ServiceUnavailableError)

#: (method, path) → the API errors that route, and the services it calls, can raise.
ROUTE_ERRORS: dict[tuple[str, str], tuple[type[APIError], ...]] = {
    ("GET", "/health"): (),
    ("GET", "/ready"): (),  # its 503 has its own body, see _ready()
    ("GET", "/metrics"): (),
    ("GET", "/v1/models"): (),
    ("GET", "/v1/usage"): (),  # its query's validation (400) is added from the parameters
    ("GET", "/v1/models/{model_id}"): (NotFoundError,),
    # schema/input checks (400), the voice (400-415), the synthesis queue (429), the backend (503)
    ("POST", "/v1/audio/speech"): (*_VOICE_SOURCE, *_PREPARE),
    # the same, and a Whisper model for the word timings (503 without one)
    ("POST", "/v1/audio/speech/captioned"): (*_VOICE_SOURCE, *_PREPARE),
    ("GET", "/v1/audio/voices"): (),
    # name rules (400), a duplicate name (409), the source or upload, preparation
    ("POST", "/v1/audio/voices"): (*_VOICE_SOURCE, ConflictError, *_PREPARE),
    ("GET", "/v1/audio/voices/{voice_id}"): (NotFoundError,),
    ("DELETE", "/v1/audio/voices/{voice_id}"): (NotFoundError,),
    ("GET", "/v1/audio/voices/{voice_id}/quality"): (NotFoundError,),
    ("POST", "/v1/audio/analyze"): (*_VOICE_SOURCE, *_PREPARE),
    # the priority/speed/input checks (400); no ZipVoice backend to tune for (503)
    ("POST", "/v1/audio/tune"): (InvalidRequestError, ServiceUnavailableError),
}

_DESCRIPTIONS = {
    400: "Invalid request (a missing or malformed field, or a value the server cannot use).",
    401: "Missing or wrong API key (only when API keys are configured).",
    403: "The source is not allowed on this server (file+ voices disabled, url+ host refused).",
    404: "Not found.",
    409: "A voice with this name already exists.",
    413: "The request body, or the audio it names, is larger than the server accepts.",
    415: "Unsupported media: the body's content type, or audio that cannot be decoded.",
    429: "Too many requests waiting; retry after the number of seconds in Retry-After.",
    503: "The backend (or the transcriber) is unavailable, loading, or the server is draining.",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "Always `Bearer`.", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}},
}

_AUDIO_TYPES = "audio/wav, audio/x-wav, audio/mpeg, audio/flac, audio/ogg, audio/webm, audio/mp4, audio/aac"


def _envelope_schemas() -> dict[str, Any]:
    return {
        ENVELOPE: {
            "title": ENVELOPE,
            "description": "OpenAI's error envelope; every error the API returns has this shape.",
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type", "param", "code"],
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string", "examples": ["invalid_request_error"]},
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                    },
                }
            },
        },
        "ReadyStatus": {
            "title": "ReadyStatus",
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "not_ready"]},
                "detail": {"type": "string"},
            },
        },
    }


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _DESCRIPTIONS.get(status, "Error."),
        "content": {"application/json": {"schema": _REF}},
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response


def _upload_body(
    schema_name: str, fields: dict[str, Any], required: list[str], max_fields: int
) -> dict[str, Any]:
    """A request body that is multipart (an audio upload) or JSON (a voice source).

    Other text fields are ignored, up to the route's ``max_fields`` (then 400); one file part."""
    form = {
        "type": "object",
        "required": required,
        "properties": fields,
        "additionalProperties": {"type": "string"},
        "maxProperties": max_fields + 1,
    }
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": form,
                "encoding": {"file": {"contentType": _AUDIO_TYPES}},
            },
            "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}},
        },
    }


_FILE = {
    "type": "string",
    "format": "binary",
    "contentMediaType": "audio/*",
    "description": "The reference audio (wav, mp3, flac, ogg, webm, m4a …).",
}
_TRANSCRIPT = {"type": "string", "description": "What the clip says (else Whisper)."}
_VOICE_NAME = {
    "type": "string",
    "pattern": r"^[A-Za-z0-9_\-]([A-Za-z0-9 _.\-]{0,62}[A-Za-z0-9_.\-])?$",
    "description": "Voice name: 1-64 of letters, digits, space, _ . - (no edge spaces, not only dots).",
}

#: request bodies the routes read by hand (multipart or JSON), declared here
#: (JSON schema, multipart fields, required fields, the route's ``request.form(max_fields=…)``)
_BODIES: dict[tuple[str, str], tuple[str, dict[str, Any], list[str], int]] = {
    ("POST", "/v1/audio/voices"): (
        "VoiceCreateJSON",
        {"name": _VOICE_NAME, "file": _FILE, "transcript": _TRANSCRIPT},
        ["name", "file"],
        8,
    ),
    ("POST", "/v1/audio/analyze"): (
        "AnalyzeJSON",
        {"file": _FILE, "transcript": _TRANSCRIPT},
        ["file"],
        4,
    ),
}
#: path parameters: longer ids than these cannot exist (model names ≤ 200, voice names/ids ≤ 64)
_PATH_PARAMS = {
    "model_id": {"minLength": 1, "maxLength": 200, "examples": ["tts-1"]},
    "voice_id": {"minLength": 1, "maxLength": 64},
}
_BODY_MODELS: dict[str, type[BaseModel]] = {"VoiceCreateJSON": VoiceCreateJSON, "AnalyzeJSON": AnalyzeJSON}


#: what :func:`api.schemas.common.transcript_problem` refuses: control characters but tab, CR, LF
TRANSCRIPT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
_TRANSCRIPT_FIELDS = ("transcript", "prompt_text")


def _constrain_transcripts(schema: dict[str, Any], max_chars: int) -> None:
    """Give every transcript property the server's rules (length, no control characters)."""
    for name, prop in schema.get("properties", {}).items():
        if name not in _TRANSCRIPT_FIELDS:
            continue
        for variant in [prop, *prop.get("anyOf", [])]:
            if variant.get("type") == "string":
                variant["pattern"] = TRANSCRIPT_PATTERN
                variant["maxLength"] = max_chars


def error_statuses(method: str, path: str, operation: dict[str, Any], settings: Settings) -> list[int]:
    """The error statuses of one operation: its table entry plus what validation and middleware add."""
    errors = ROUTE_ERRORS.get((method.upper(), path), ())
    statuses = {cls.status_code for cls in errors}
    if "requestBody" in operation:
        statuses |= {400, 413}  # validation; the body limit (api.middleware)
        if (method.upper(), path) in _BODIES:
            statuses.add(415)  # neither multipart nor JSON
    if any(p.get("in") == "query" for p in operation.get("parameters", [])):
        statuses.add(400)
    if (settings.api_keys or settings.admin_api_keys) and path not in PUBLIC_PATHS:
        statuses.add(AuthenticationError.status_code)
    return sorted(statuses)


def build_openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    spec = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=app.routes,
    )
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(_envelope_schemas())
    for name, model in _BODY_MODELS.items():
        schemas.setdefault(name, model.model_json_schema(ref_template="#/components/schemas/{model}"))
    schemas["VoiceCreateJSON"]["properties"]["name"].update(_VOICE_NAME)
    max_chars = int(getattr(settings, "max_transcript_chars", 2000))
    for schema in schemas.values():
        _constrain_transcripts(schema, max_chars)
    keys = bool(settings.api_keys or settings.admin_api_keys)
    if keys:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            key = (method.upper(), path)
            if key in _BODIES and "requestBody" not in operation:
                operation["requestBody"] = _upload_body(*_BODIES[key])
                form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
                _constrain_transcripts(form, max_chars)
            for param in operation.get("parameters", []):
                if param.get("in") == "path" and param.get("name") in _PATH_PARAMS:
                    param.setdefault("schema", {}).update(_PATH_PARAMS[param["name"]])
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status in error_statuses(method, path, operation, settings):
                responses[str(status)] = _error_response(status)
            if keys and path not in PUBLIC_PATHS:
                operation["security"] = [{"bearer": []}]
    ready = spec.get("paths", {}).get("/ready", {}).get("get")
    if ready is not None:
        body = {"application/json": {"schema": {"$ref": "#/components/schemas/ReadyStatus"}}}
        ready["responses"]["200"] = {"description": "Ready.", "content": body}
        ready["responses"]["503"] = {"description": "Not ready yet, or draining.", "content": body}
    return spec


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Serve :func:`build_openapi`'s document at ``/openapi.json`` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
