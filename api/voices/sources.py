"""Voice specs → :class:`PresetVoice` or decoded :class:`ReferenceVoice`, from every source, safely.

Spec forms (checked in this order):

* ``{"id": "..."}`` → a registered voice (404 when missing);
* ``file+PATH`` → a file under ``VOICE_FILE_ROOT`` (unset: 403). ``PATH`` is relative to the root and
  taken literally (no percent-decoding). It is walked one component at a time from a directory handle
  on the root (``openat`` with ``O_NOFOLLOW``); symlinks are followed by hand and only while they stay
  inside the root. Absolute paths, ``..``, backslashes, NUL bytes, escaping symlinks, missing files and
  non-regular files (directories, FIFOs, devices) all give the **same** 404, and nothing outside the
  root is ever opened. The size is checked with ``fstat`` before reading (413);
* ``url+http(s)://…`` → downloaded by :mod:`api.voices.safe_fetch` (403/400/413 there);
* ``base64+PAYLOAD`` and ``data:audio/…;base64,PAYLOAD`` → the encoded length is checked before
  decoding (413), then strict base64 (400 when malformed); a data: URL must name an ``audio/*``
  media type (anything else, a missing type included, is 400);
* a registered voice id or name in the caller's namespace;
* anything else → :class:`PresetVoice` (the engine decides whether it exists). An id-shaped spec that
  is not registered is a 404, not a preset.

For speech requests, :meth:`VoiceResolver.for_engine` is the one place that decides what a voice
string is, given the kind of voice the engine declares (``voice_kind``):

* ``VOICE_ALIASES`` first (OpenAI names such as ``alloy``; specs shorter than 64 characters,
  case-insensitive): the alias target replaces the spec;
* a **preset** engine (Kokoro) takes the spec as a preset name: source forms (``file+``, ``url+``,
  ``base64+``, ``data:``) are a 400, registered voices are not looked up, and an alias target missing
  from the engine's presets falls back to ``KOKORO_DEFAULT_VOICE``;
* a **clone** engine gets the forms above (``resolve``).

Every source's bytes are decoded by ``decode_audio`` with ``MAX_REFERENCE_SECONDS`` and a decoded-size
cap. ``digest`` is the sha256 of ``b"<rate>:<channels>:"`` followed by the decoded float32
little-endian samples (so the same samples at another rate get another digest). A ``prompt_text``
given by the caller overrides any stored transcript (``transcript_source="given"``).
"""

from __future__ import annotations

import binascii
import os
import stat
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from api.audio.digest import audio_digest
from api.engines.base import PresetVoice, ReferenceVoice, Voice
from api.errors import (
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
)
from api.settings import Settings
from api.voices.safe_fetch import FetchResult, SafeFetcher, allowing_networks
from api.voices.store import DEFAULT_NAMESPACE, VoiceStore, is_voice_id

_PARAM = "voice"
#: voice source forms (a preset engine refuses them)
SOURCE_PREFIXES = ("file+", "url+", "base64+", "data:")
MAX_SYMLINK_HOPS = 40
#: decoded float32 bytes allowed per second of reference: 2 channels at 192 kHz (or 8 at 48 kHz)
DECODED_BYTES_PER_SECOND = 192_000 * 2 * 4


class Decoder(Protocol):
    """The ``api.audio.decode.decode_audio`` signature (a seam for tests)."""

    def __call__(
        self, data: bytes, *, max_seconds: float, max_decoded_bytes: int | None = None
    ) -> tuple[np.ndarray, int]: ...


UrlFetcher = Callable[[str], FetchResult]
SourceKind = Literal["registered", "file", "url", "base64", "upload"]


def _default_decoder(
    data: bytes, *, max_seconds: float, max_decoded_bytes: int | None = None
) -> tuple[np.ndarray, int]:
    from api.audio.decode import decode_audio  # lazy: PyAV is heavy

    return decode_audio(data, max_seconds=max_seconds, max_decoded_bytes=max_decoded_bytes)


def file_not_found() -> NotFoundError:
    """The one 404 every unusable ``file+`` path gets (missing, outside the root, not a file …)."""
    return NotFoundError("Voice file not found.", param=_PARAM, code="voice_file_not_found")


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"The voice audio is larger than {limit} bytes.", param=_PARAM)


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def read_file_beneath(root: Path, relative: str, max_bytes: int) -> bytes:
    """Read regular file ``relative`` under ``root`` without ever leaving it (see module docstring)."""
    if (
        not relative
        or "\x00" in relative
        or "\\" in relative
        or relative.startswith("/")
        or relative.endswith("/")
        or ".." in relative.split("/")
    ):
        raise file_not_found()
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    try:
        root_fd = os.open(root, flags | os.O_DIRECTORY)
    except OSError:
        raise file_not_found() from None
    real_root: str | None = None
    stack = [root_fd]
    pending = deque(_components(relative))
    hops = 0
    try:
        while pending:
            name = pending.popleft()
            if name == "..":  # only from symlink targets: pop to the directory we came through
                if len(stack) == 1:
                    raise file_not_found()
                os.close(stack.pop())
                continue
            dir_fd = stack[-1]
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                raise file_not_found() from None
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise file_not_found()
                try:
                    target = os.readlink(name, dir_fd=dir_fd)
                except OSError:
                    raise file_not_found() from None
                if target.startswith("/"):  # absolute: allowed only when it points inside the root
                    if real_root is None:
                        real_root = os.path.realpath(root)
                    rel = os.path.relpath(os.path.normpath(target), real_root)
                    if rel == ".." or rel.startswith("../") or os.path.isabs(rel):
                        raise file_not_found()
                    while len(stack) > 1:
                        os.close(stack.pop())
                    pending.extendleft(reversed(_components(rel)))
                else:
                    pending.extendleft(reversed(_components(target)))
                continue
            if pending:  # an intermediate directory
                try:
                    fd = os.open(name, flags | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
                except OSError:
                    raise file_not_found() from None
                stack.append(fd)
                continue
            return _read_regular(name, dir_fd, flags, max_bytes)
        raise file_not_found()  # the path named the root itself
    finally:
        for fd in stack:
            os.close(fd)


def _read_regular(name: str, dir_fd: int, flags: int, max_bytes: int) -> bytes:
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: a symlink swapped in fails
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0), dir_fd=dir_fd)
    except OSError:  # ELOOP (a symlink appeared), ENOENT, EACCES, ENXIO …: all the same 404
        raise file_not_found() from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise file_not_found()
        if st.st_size > max_bytes:
            raise _too_large(max_bytes)
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # grew after fstat
                raise _too_large(max_bytes)
        return b"".join(chunks)
    finally:
        os.close(fd)


def decode_base64_payload(payload: str, max_bytes: int) -> bytes:
    """Strict, canonical base64 → bytes; 413 from the length alone before decoding, 400 when malformed."""
    if len(payload) > 4 * ((max_bytes + 2) // 3):
        raise _too_large(max_bytes)
    if not payload:
        raise InvalidRequestError("The base64 voice is empty.", param=_PARAM, code="invalid_base64")
    try:
        raw = payload.encode("ascii")
        data = binascii.a2b_base64(raw, strict_mode=True)
        if binascii.b2a_base64(data, newline=False) != raw:  # canonical padding only ("QUJD====")
            raise ValueError("non-canonical base64")
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidRequestError(
            "The base64 voice is not valid base64.", param=_PARAM, code="invalid_base64"
        ) from None
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    return data


def parse_data_url(spec: str, max_bytes: int) -> bytes:
    """``data:audio/<subtype>[;param…];base64,<payload>`` → bytes.

    The media type must be ``audio/<subtype>``: a missing type, ``application/octet-stream``, ``video/…``
    or anything else is a 400 (``invalid_data_url``) that points to ``base64+`` for untyped payloads.
    """
    header, sep, payload = spec[len("data:") :].partition(",")
    if not sep:
        raise InvalidRequestError("Malformed data: URL voice.", param=_PARAM, code="invalid_data_url")
    params = [p.strip().lower() for p in header.split(";")]
    kind, slash, subtype = params[0].partition("/")
    if kind != "audio" or not slash or not subtype:
        raise InvalidRequestError(
            "A data: URL voice must name an audio/* media type (data:audio/wav;base64,…); "
            "send untyped audio as base64+….",
            param=_PARAM,
            code="invalid_data_url",
        )
    if params[-1] != "base64":
        raise InvalidRequestError(
            "data: URL voices must be base64-encoded.", param=_PARAM, code="invalid_data_url"
        )
    return decode_base64_payload(payload, max_bytes)


class VoiceResolver:
    """Turns the ``voice`` of a request into something an engine can speak (blocking; use a thread).

    ``decoder`` and ``fetcher`` are seams; by default ``api.audio.decode.decode_audio`` and a
    :class:`SafeFetcher` built from the settings.
    """

    def __init__(
        self,
        settings: Settings,
        store: VoiceStore | None = None,
        *,
        decoder: Decoder | None = None,
        fetcher: UrlFetcher | None = None,
        max_decoded_bytes: int | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.decoder: Decoder = decoder or _default_decoder
        self.fetcher: UrlFetcher = (
            fetcher
            or SafeFetcher(
                max_bytes=settings.max_voice_bytes,
                timeout=settings.voice_url_timeout,
                allowed_hosts=settings.voice_url_allowed_hosts,
                address_policy=allowing_networks(settings.voice_url_allowed_networks),
            ).fetch
        )
        self.max_decoded_bytes = max_decoded_bytes or int(
            settings.max_reference_seconds * DECODED_BYTES_PER_SECOND
        )

    def for_engine(
        self,
        spec: str,
        *,
        kind: Literal["preset", "clone"],
        engine_name: str,
        presets: Callable[[], list[str]],
        owner: str | None = None,
        prompt_text: str | None = None,
        admin: bool = False,
    ) -> Voice:
        """The voice of a speech request for an engine taking voices of ``kind`` (see the module
        docstring): aliases, then presets (``presets()`` lists the engine's own) or clone sources."""
        alias = self.settings.voice_aliases.get(spec.lower()) if len(spec) < 64 else None
        if kind == "preset":
            if spec.startswith(SOURCE_PREFIXES):
                raise InvalidRequestError(
                    f"Model '{engine_name}' speaks preset voices only; use a ZipVoice model to clone a voice.",
                    param=_PARAM,
                )
            if alias is not None:
                return PresetVoice(alias if alias in presets() else self.settings.kokoro_default_voice)
            return PresetVoice(spec)
        return self.resolve(alias or spec, owner=owner, prompt_text=prompt_text, admin=admin)

    def resolve(
        self,
        spec: str | Mapping[str, Any],
        *,
        owner: str | None = None,
        prompt_text: str | None = None,
        admin: bool = False,
    ) -> Voice:
        """Resolve ``spec`` for ``owner`` (a store namespace; ``None`` → the default namespace)."""
        namespace = owner or DEFAULT_NAMESPACE
        given = prompt_text if prompt_text is not None and prompt_text.strip() else None
        if isinstance(spec, Mapping):
            key = spec.get("id")
            if not isinstance(key, str) or not key or set(spec) != {"id"}:
                raise InvalidRequestError(
                    'A voice object must be {"id": "<voice id or name>"}.', param=_PARAM
                )
            found = self._registered(key, namespace, admin, given, required=True)
            assert found is not None
            return found
        if not isinstance(spec, str) or not spec:
            raise InvalidRequestError("'voice' must be a non-empty string.", param=_PARAM)
        max_bytes = self.settings.max_voice_bytes
        if spec.startswith("file+"):
            return self._clip(self._read_file(spec[len("file+") :]), "file", given)
        if spec.startswith("url+"):
            return self._clip(self.fetcher(spec[len("url+") :]).content, "url", given)
        if spec.startswith("base64+"):
            return self._clip(decode_base64_payload(spec[len("base64+") :], max_bytes), "base64", given)
        if spec[:5].lower() == "data:":
            return self._clip(parse_data_url(spec, max_bytes), "base64", given)
        voice = self._registered(spec, namespace, admin, given, required=is_voice_id(spec))
        return voice if voice is not None else PresetVoice(spec)

    # -- sources ------------------------------------------------------------------------------

    def _read_file(self, relative: str) -> bytes:
        root = self.settings.voice_file_root
        if root is None:
            raise PermissionDeniedError(
                "file+ voices are disabled on this server (VOICE_FILE_ROOT is not set).",
                param=_PARAM,
                code="file_voices_disabled",
            )
        return read_file_beneath(Path(root), relative, self.settings.max_voice_bytes)

    def _registered(
        self, key: str, namespace: str, admin: bool, given: str | None, *, required: bool
    ) -> ReferenceVoice | None:
        meta = self.store.find(namespace, key, admin=admin) if self.store is not None else None
        if meta is None:
            if required:
                raise NotFoundError(f"Voice '{key[:64]}' not found.", param=_PARAM, code="voice_not_found")
            return None
        assert self.store is not None
        samples, rate = self.store.load_audio(meta)
        transcript = given if given is not None else meta.transcript
        source: Literal["given", "stored"] | None = None
        if transcript is not None:
            source = "given" if given is not None else "stored"
        return ReferenceVoice(
            samples=samples,
            sample_rate=rate,
            transcript=transcript,
            digest=audio_digest(samples, rate),
            source="registered",
            voice_id=meta.id,
            transcript_source=source,
        )

    def clip_from_upload(self, data: bytes, transcript: str | None) -> ReferenceVoice:
        """A reference clip from uploaded bytes (size-capped, then decoded like every other source)."""
        if len(data) > self.settings.max_voice_bytes:
            raise PayloadTooLargeError(
                f"The audio file exceeds {self.settings.max_voice_bytes} bytes.", param="file"
            )
        given = transcript if transcript is not None and transcript.strip() else None
        return self._clip(data, "upload", given)

    def _clip(self, data: bytes, source: SourceKind, given: str | None) -> ReferenceVoice:
        samples, rate = self.decoder(
            data, max_seconds=self.settings.max_reference_seconds, max_decoded_bytes=self.max_decoded_bytes
        )
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        return ReferenceVoice(
            samples=samples,
            sample_rate=rate,
            transcript=given,
            digest=audio_digest(samples, rate),
            source=source,
            transcript_source="given" if given is not None else None,
        )
