"""Persistent voice store: registered reference clips with their metadata.

Layout (one directory per voice, per owner namespace)::

    <root>/<namespace>/<id>/audio.wav   16-bit PCM WAV, the reference clip
    <root>/<namespace>/<id>/meta.json   id, name, created_at, transcript, transcript_source,
                                        duration, sample_rate, channels, quality, owner

Durability: a voice is written into ``<namespace>/.tmp-…`` (each file flushed and fsynced, then the
directory), then renamed to ``<namespace>/<id>`` and the namespace directory fsynced, so a voice is
visible only when complete and a crash mid-write never touches earlier voices. Metadata updates
write a temp file in the voice directory and ``os.replace`` it. Deletes rename the directory away
first, so a voice disappears atomically. Leftover ``.tmp-``/``.del-`` directories are removed when a
store opens.

Concurrency: mutations hold a process lock and an ``flock`` on ``<root>/.lock`` (several server
processes may share a root). Reads take no lock. Nothing is cached in memory: lookups read the disk.

Namespaces: each API key owns one (:func:`namespace_for`); ``admin=True`` calls see all of them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import threading
import wave
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from api.errors import ConflictError, InvalidRequestError, NotFoundError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: process lock only
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

TranscriptSource = Literal["given", "stored", "whisper"]

AUDIO_FILE = "audio.wav"
META_FILE = "meta.json"
DEFAULT_NAMESPACE = "default"

_NAME_RE = re.compile(r"^[A-Za-z0-9 _.\-]{1,64}$")
_ID_RE = re.compile(r"^voice_[A-Za-z0-9_-]{16}$")
_NAMESPACE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_UNSET: Any = object()


def namespace_for(api_key: str | None) -> str:
    """The namespace owned by an API key (a hash, never the key); no key → ``default``."""
    if not api_key:
        return DEFAULT_NAMESPACE
    return "k" + sha256(api_key.encode("utf-8")).hexdigest()[:32]


def validate_name(name: str) -> str:
    """Check a voice name: 1–64 of ``[A-Za-z0-9 _.-]``, not only dots, no edge spaces (else 400)."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or set(name) == {"."} or name != name.strip():
        raise InvalidRequestError(
            "Voice names are 1-64 characters of letters, digits, space, '_', '.', '-' "
            "(not only dots, no leading or trailing space).",
            param="name",
            code="invalid_voice_name",
        )
    return name


def is_voice_id(key: str) -> bool:
    """True when ``key`` has the shape of a generated voice id."""
    return bool(_ID_RE.match(key))


def new_voice_id() -> str:
    """A fresh url-safe id: ``voice_`` + 16 random url-safe characters (96 bits)."""
    return "voice_" + secrets.token_urlsafe(12)


def _check_namespace(namespace: str) -> str:
    if not _NAMESPACE_RE.match(namespace):
        raise ValueError(f"invalid voice namespace {namespace!r}")
    return namespace


@dataclass(frozen=True)
class VoiceMeta:
    """What ``meta.json`` holds."""

    id: str
    name: str
    owner: str
    created_at: str
    duration: float
    sample_rate: int
    channels: int
    transcript: str | None = None
    transcript_source: TranscriptSource | None = None
    quality: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VoiceMeta:
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            owner=str(data["owner"]),
            created_at=str(data["created_at"]),
            duration=float(data["duration"]),
            sample_rate=int(data["sample_rate"]),
            channels=int(data["channels"]),
            transcript=data.get("transcript"),
            transcript_source=data.get("transcript_source"),
            quality=dict(data.get("quality") or {}),
        )


class VoiceStore(Protocol):
    """Where registered voices live. ``owner`` is a namespace; ``admin=True`` spans all of them."""

    def create(
        self,
        owner: str,
        name: str,
        samples: np.ndarray,
        sample_rate: int,
        *,
        transcript: str | None = None,
        transcript_source: TranscriptSource | None = None,
        quality: Mapping[str, Any] | None = None,
    ) -> VoiceMeta:
        """Store a new voice; 409 when ``name`` exists in ``owner``'s namespace, 400 for a bad name."""
        ...

    def find(self, owner: str, key: str, *, admin: bool = False) -> VoiceMeta | None:
        """A voice by id or name, or ``None``."""
        ...

    def get(self, owner: str, key: str, *, admin: bool = False) -> VoiceMeta:
        """A voice by id or name; 404 when missing."""
        ...

    def list(self, owner: str, *, admin: bool = False) -> list[VoiceMeta]:
        """Voices of ``owner`` (all namespaces when ``admin``), oldest first."""
        ...

    def load_audio(self, meta: VoiceMeta) -> tuple[np.ndarray, int]:
        """The stored clip as float32 ``(channels, n)`` and its sample rate."""
        ...

    def update(
        self,
        owner: str,
        key: str,
        *,
        admin: bool = False,
        name: str = ...,
        transcript: str | None = ...,
        transcript_source: TranscriptSource | None = ...,
        quality: Mapping[str, Any] = ...,
    ) -> VoiceMeta:
        """Change metadata (only the fields given); 404 when missing, 409 on a name clash."""
        ...

    def delete(self, owner: str, key: str, *, admin: bool = False) -> VoiceMeta:
        """Remove a voice; 404 when missing."""
        ...


def _not_found() -> NotFoundError:
    return NotFoundError("Voice not found.", param="voice", code="voice_not_found")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data``, flushed and fsynced."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """Float32 ``(channels, n)`` → 16-bit PCM WAV bytes."""
    import io

    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(int(samples.shape[0]))
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.T.tobytes())
    return buf.getvalue()


def _write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    _write_bytes(path, _wav_bytes(samples, sample_rate))


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        frames = w.readframes(w.getnframes())
    if width != 2:
        raise ValueError("stored voice audio is not 16-bit PCM")
    pcm = np.frombuffer(frames, dtype="<i2").reshape(-1, channels).T
    return (pcm.astype(np.float32) / 32767.0), rate


def _json_bytes(meta: VoiceMeta) -> bytes:
    return json.dumps(meta.to_json(), ensure_ascii=False, indent=2).encode("utf-8") + b"\n"


class FileVoiceStore:
    """A :class:`VoiceStore` on the local filesystem (see the module docstring)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        with self._mutating():
            self._sweep()

    # -- locking ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _mutating(self) -> Iterator[None]:
        with self._lock:
            if fcntl is None:
                yield
                return
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    def _sweep(self) -> None:
        """Remove leftovers of interrupted writes/deletes (safe: we hold the lock writers take)."""
        for ns in self._namespace_dirs():
            for entry in ns.iterdir():
                if entry.name.startswith((".tmp-", ".del-")):
                    shutil.rmtree(entry, ignore_errors=True)

    # -- reading ------------------------------------------------------------------------------

    def _namespace_dirs(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if p.is_dir() and _NAMESPACE_RE.match(p.name))

    def _read_meta(self, voice_dir: Path) -> VoiceMeta | None:
        try:
            data = json.loads((voice_dir / META_FILE).read_text("utf-8"))
            meta = VoiceMeta.from_json(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("skipping unreadable voice metadata in %s", voice_dir.name)
            return None
        return meta if meta.id == voice_dir.name else None

    def _scan(self, namespace: str) -> list[VoiceMeta]:
        ns_dir = self.root / _check_namespace(namespace)
        if not ns_dir.is_dir():
            return []
        out = []
        for entry in ns_dir.iterdir():
            if is_voice_id(entry.name) and entry.is_dir():
                meta = self._read_meta(entry)
                if meta is not None:
                    out.append(meta)
        return sorted(out, key=lambda m: (m.created_at, m.id))

    def _namespaces(self, owner: str, admin: bool) -> list[str]:
        _check_namespace(owner)
        if not admin:
            return [owner]
        others = [p.name for p in self._namespace_dirs() if p.name != owner]
        return [owner, *others]

    def find(self, owner: str, key: str, *, admin: bool = False) -> VoiceMeta | None:
        if not isinstance(key, str) or not key:
            return None
        namespaces = self._namespaces(owner, admin)
        if is_voice_id(key):
            for ns in namespaces:
                meta = self._read_meta(self.root / ns / key)
                if meta is not None:
                    return meta
        own = [m for m in self._scan(owner) if m.name == key]
        if own:
            return own[0]
        if admin:
            matches = [m for ns in namespaces[1:] for m in self._scan(ns) if m.name == key]
            if len(matches) > 1:
                raise ConflictError(
                    "Several namespaces have a voice with this name; use its id.", param="voice"
                )
            if matches:
                return matches[0]
        return None

    def get(self, owner: str, key: str, *, admin: bool = False) -> VoiceMeta:
        meta = self.find(owner, key, admin=admin)
        if meta is None:
            raise _not_found()
        return meta

    def list(self, owner: str, *, admin: bool = False) -> list[VoiceMeta]:
        metas = [m for ns in self._namespaces(owner, admin) for m in self._scan(ns)]
        return sorted(metas, key=lambda m: (m.created_at, m.id))

    def load_audio(self, meta: VoiceMeta) -> tuple[np.ndarray, int]:
        if not is_voice_id(meta.id):
            raise _not_found()
        path = self.root / _check_namespace(meta.owner) / meta.id / AUDIO_FILE
        try:
            return _read_wav(path)
        except FileNotFoundError:
            raise _not_found() from None

    # -- writing ------------------------------------------------------------------------------

    def create(
        self,
        owner: str,
        name: str,
        samples: np.ndarray,
        sample_rate: int,
        *,
        transcript: str | None = None,
        transcript_source: TranscriptSource | None = None,
        quality: Mapping[str, Any] | None = None,
    ) -> VoiceMeta:
        _check_namespace(owner)
        validate_name(name)
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 2 or samples.shape[1] == 0 or not 1 <= samples.shape[0] <= 8:
            raise InvalidRequestError("Voice audio must be (channels, samples) and not empty.", param="file")
        if sample_rate <= 0:
            raise InvalidRequestError("Invalid sample rate.", param="file")
        with self._mutating():
            if any(m.name == name for m in self._scan(owner)):
                raise ConflictError(f"A voice named '{name}' already exists.", param="name")
            ns_dir = self.root / owner
            ns_dir.mkdir(exist_ok=True)
            voice_id = new_voice_id()
            meta = VoiceMeta(
                id=voice_id,
                name=name,
                owner=owner,
                created_at=datetime.now(UTC).isoformat(timespec="microseconds"),
                duration=round(samples.shape[1] / sample_rate, 6),
                sample_rate=int(sample_rate),
                channels=int(samples.shape[0]),
                transcript=transcript,
                transcript_source=transcript_source if transcript is not None else None,
                quality=dict(quality or {}),
            )
            tmp = ns_dir / f".tmp-{voice_id}-{secrets.token_hex(4)}"
            tmp.mkdir()
            try:
                _write_wav(tmp / AUDIO_FILE, samples, sample_rate)
                _write_bytes(tmp / META_FILE, _json_bytes(meta))
                _fsync_dir(tmp)
                os.rename(tmp, ns_dir / voice_id)
                _fsync_dir(ns_dir)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return meta

    def update(
        self,
        owner: str,
        key: str,
        *,
        admin: bool = False,
        name: str = _UNSET,
        transcript: str | None = _UNSET,
        transcript_source: TranscriptSource | None = _UNSET,
        quality: Mapping[str, Any] = _UNSET,
    ) -> VoiceMeta:
        with self._mutating():
            meta = self.get(owner, key, admin=admin)
            changes: dict[str, Any] = {}
            if name is not _UNSET and name != meta.name:
                validate_name(name)
                if any(m.name == name for m in self._scan(meta.owner)):
                    raise ConflictError(f"A voice named '{name}' already exists.", param="name")
                changes["name"] = name
            if transcript is not _UNSET:
                changes["transcript"] = transcript
            if transcript_source is not _UNSET:
                changes["transcript_source"] = transcript_source
            if quality is not _UNSET:
                changes["quality"] = dict(quality)
            if not changes:
                return meta
            new = replace(meta, **changes)
            voice_dir = self.root / meta.owner / meta.id
            tmp = voice_dir / f".{META_FILE}.{secrets.token_hex(4)}.tmp"
            try:
                _write_bytes(tmp, _json_bytes(new))
                os.replace(tmp, voice_dir / META_FILE)
                _fsync_dir(voice_dir)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            return new

    def delete(self, owner: str, key: str, *, admin: bool = False) -> VoiceMeta:
        with self._mutating():
            meta = self.get(owner, key, admin=admin)
            ns_dir = self.root / meta.owner
            trash = ns_dir / f".del-{meta.id}-{secrets.token_hex(4)}"
            try:
                os.rename(ns_dir / meta.id, trash)
            except FileNotFoundError:
                raise _not_found() from None
            _fsync_dir(ns_dir)
            shutil.rmtree(trash, ignore_errors=True)
            return meta
