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
processes may share a root). Reads take no lock.

Index: each store keeps in memory, per namespace, name → id and the ids in listing order
(``created_at``, ``id``), built by reading every ``meta.json`` once when the store opens (bounded by
the voices on disk) and updated by its own creates/deletes right after the atomic rename. A lookup
by id or name is a dict hit plus one ``meta.json`` read; a listing page reads only its voices.
Every create/delete also replaces ``<root>/.generation`` (a random token, temp + rename); a store
that finds the token changed by another process rebuilds its index before answering, and writers
refresh under the lock, so names stay unique and quotas exact across processes.

Quota: ``max_per_namespace`` (``MAX_VOICES_PER_KEY``, 0 = unlimited) voices per namespace; one
more is refused with 403 ``voice_quota_exceeded``.

Namespaces: each API key owns one (:func:`api.auth.owner_for_key`, the only place that derives
it); ``admin=True`` calls see all of them.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import json
import logging
import os
import re
import secrets
import shutil
import threading
import wave
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from api.auth import DEFAULT_NAMESPACE as DEFAULT_NAMESPACE  # re-exported for callers
from api.errors import ConflictError, InvalidRequestError, NotFoundError, PermissionDeniedError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: process lock only
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

TranscriptSource = Literal["given", "stored", "whisper"]

AUDIO_FILE = "audio.wav"
META_FILE = "meta.json"
GENERATION_FILE = ".generation"

_NAME_RE = re.compile(r"^[A-Za-z0-9 _.\-]{1,64}$")
_ID_RE = re.compile(r"^voice_[A-Za-z0-9_-]{16}$")
_NAMESPACE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


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


def quota_error(limit: int) -> PermissionDeniedError:
    """The 403 of a registration beyond ``MAX_VOICES_PER_KEY``."""
    return PermissionDeniedError(
        f"This API key already has {limit} registered voices, the most this server allows "
        "(MAX_VOICES_PER_KEY); delete one before registering another.",
        param="name",
        code="voice_quota_exceeded",
    )


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


@dataclass(frozen=True)
class VoicePage:
    """One page of a listing: voices in order, and whether more follow the last one."""

    voices: list[VoiceMeta]
    has_more: bool = False


def new_voice(
    owner: str,
    name: str,
    samples: np.ndarray,
    sample_rate: int,
    *,
    transcript: str | None = None,
    transcript_source: TranscriptSource | None = None,
    quality: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, VoiceMeta]:
    """Check a new voice's name and audio (400s) and build its metadata with a fresh id; every store
    calls this first, so all of them accept and describe voices alike."""
    validate_name(name)
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 2 or samples.shape[1] == 0 or not 1 <= samples.shape[0] <= 8:
        raise InvalidRequestError("Voice audio must be (channels, samples) and not empty.", param="file")
    if sample_rate <= 0:
        raise InvalidRequestError("Invalid sample rate.", param="file")
    meta = VoiceMeta(
        id=new_voice_id(),
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
    return samples, meta


class VoiceStore(Protocol):
    """Where registered voices live. ``owner`` is a namespace; ``admin=True`` spans all of them.

    Kept small on purpose: any backend (this file store, a future SQL one) implements these seven.
    Voices are ordered by ``(created_at, id)`` (oldest first) everywhere.
    """

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
        """Store a new voice; 409 when ``name`` exists in ``owner``'s namespace, 403 when the
        namespace holds its quota of voices already, 400 for a bad name."""
        ...

    def find(self, owner: str, key: str, *, admin: bool = False) -> VoiceMeta | None:
        """Resolve a voice id or name to its metadata, or ``None`` (own namespace first)."""
        ...

    def get(self, owner: str, key: str, *, admin: bool = False) -> VoiceMeta:
        """A voice by id or name; 404 when missing."""
        ...

    def list(
        self, owner: str, *, admin: bool = False, limit: int | None = None, after: str | None = None
    ) -> VoicePage:
        """Voices of ``owner`` (all namespaces when ``admin``), oldest first: at most ``limit``
        (all when ``None``) of those after the voice id ``after`` (400 when it is not listed)."""
        ...

    def count(self, owner: str) -> int:
        """How many voices ``owner``'s namespace holds."""
        ...

    def load_audio(self, meta: VoiceMeta) -> tuple[np.ndarray, int]:
        """The stored clip as float32 ``(channels, n)`` and its sample rate."""
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


@dataclass(frozen=True)
class _Entry:
    """What the in-memory index keeps of a voice (its metadata stays on disk)."""

    order: tuple[str, str]  # (created_at, id): the listing order
    name: str
    namespace: str


class _Index:
    """Name → id per namespace, id → entry, and each namespace's ids in listing order."""

    def __init__(self) -> None:
        self.by_id: dict[str, _Entry] = {}
        self.by_name: dict[str, dict[str, str]] = {}
        self.ordered: dict[str, list[tuple[str, str]]] = {}

    def add(self, meta: VoiceMeta) -> None:
        entry = _Entry((meta.created_at, meta.id), meta.name, meta.owner)
        self.by_id[meta.id] = entry
        self.by_name.setdefault(meta.owner, {})[meta.name] = meta.id
        bisect.insort(self.ordered.setdefault(meta.owner, []), entry.order)

    def remove(self, voice_id: str) -> None:
        entry = self.by_id.pop(voice_id, None)
        if entry is None:
            return
        names = self.by_name.get(entry.namespace, {})
        if names.get(entry.name) == voice_id:
            del names[entry.name]
        ordered = self.ordered.get(entry.namespace, [])
        i = bisect.bisect_left(ordered, entry.order)
        if i < len(ordered) and ordered[i] == entry.order:
            del ordered[i]


class FileVoiceStore:
    """A :class:`VoiceStore` on the local filesystem (see the module docstring).

    ``max_per_namespace`` (``MAX_VOICES_PER_KEY``; 0 = unlimited) caps the voices of one namespace.
    """

    def __init__(self, root: Path | str, *, max_per_namespace: int = 0) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_per_namespace = max(0, int(max_per_namespace))
        self._lock = threading.RLock()
        self._index = _Index()
        self._index_lock = threading.Lock()  # short: guards the index, never held during I/O
        self._generation: str | None = None
        with self._mutating():
            self._sweep()
            self._refresh(force=True)

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

    # -- the index ----------------------------------------------------------------------------

    def _read_generation(self) -> str:
        try:
            return (self.root / GENERATION_FILE).read_text("ascii").strip()
        except (OSError, UnicodeDecodeError):
            return ""

    def _bump_generation(self) -> None:
        """Tell other processes sharing the root that the set of voices changed (lock held)."""
        gen = secrets.token_hex(8)
        tmp = self.root / f".{GENERATION_FILE}.{gen}.tmp"
        try:
            tmp.write_text(gen + "\n", "ascii")
            os.replace(tmp, self.root / GENERATION_FILE)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._generation = gen

    def _refresh(self, *, force: bool = False) -> None:
        """Rebuild the index from disk when another process changed the voices (or ``force``).

        The generation is read before the scan, so a change that lands during the scan is seen
        again on the next call. The scan reads each ``meta.json`` once: bounded by the voices on disk.
        """
        gen = self._read_generation()
        with self._lock:
            if not force and gen == self._generation:
                return
            index = _Index()
            for ns_dir in self._namespace_dirs():
                for entry in ns_dir.iterdir():
                    if is_voice_id(entry.name) and entry.is_dir():
                        meta = self._read_meta(entry)
                        if meta is not None and meta.owner == ns_dir.name:
                            index.add(meta)
            with self._index_lock:
                self._index, self._generation = index, gen

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

    def _read_indexed(self, voice_id: str, namespace: str) -> VoiceMeta | None:
        """The metadata of an indexed voice: one ``meta.json`` read (outside the index lock)."""
        return self._read_meta(self.root / namespace / voice_id)

    def _namespaces(self, owner: str, admin: bool) -> list[str]:
        """``owner`` then, for an admin, every other indexed namespace (index lock held)."""
        if not admin:
            return [owner]
        return [owner, *sorted(ns for ns in self._index.ordered if ns != owner)]

    def _locate(self, owner: str, key: str, admin: bool) -> tuple[str, str] | None:
        """(id, namespace) of the voice ``key`` names, from the index alone."""
        with self._index_lock:
            index = self._index
            if is_voice_id(key):
                entry = index.by_id.get(key)
                if entry is not None and (admin or entry.namespace == owner):
                    return key, entry.namespace
            own = index.by_name.get(owner, {}).get(key)
            if own is not None:
                return own, owner
            if admin:
                matches = [
                    (names[key], ns) for ns, names in index.by_name.items() if ns != owner and key in names
                ]
                if len(matches) > 1:
                    raise ConflictError(
                        "Several namespaces have a voice with this name; use its id.", param="voice"
                    )
                if matches:
                    return matches[0]
        return None

    def find(self, owner: str, key: str, *, admin: bool = False) -> VoiceMeta | None:
        if not isinstance(key, str) or not key:
            return None
        _check_namespace(owner)
        self._refresh()
        found = self._locate(owner, key, admin)
        return self._read_indexed(*found) if found is not None else None

    def get(self, owner: str, key: str, *, admin: bool = False) -> VoiceMeta:
        meta = self.find(owner, key, admin=admin)
        if meta is None:
            raise _not_found()
        return meta

    def list(
        self, owner: str, *, admin: bool = False, limit: int | None = None, after: str | None = None
    ) -> VoicePage:
        _check_namespace(owner)
        self._refresh()
        with self._index_lock:
            index = self._index
            namespaces = self._namespaces(owner, admin)
            if len(namespaces) == 1:
                ordered = index.ordered.get(owner, [])
            else:
                ordered = list(heapq.merge(*(index.ordered.get(ns, []) for ns in namespaces)))
            start = 0
            if after is not None:
                entry = index.by_id.get(after)
                if entry is None or entry.namespace not in namespaces:
                    raise InvalidRequestError(
                        "'after' must be the id of a voice from an earlier page.", param="after"
                    )
                start = bisect.bisect_right(ordered, entry.order)
            stop = len(ordered) if limit is None else min(len(ordered), start + max(0, limit))
            page = [(vid, index.by_id[vid].namespace) for _, vid in ordered[start:stop]]
            has_more = stop < len(ordered)
        voices = [m for vid, ns in page if (m := self._read_indexed(vid, ns)) is not None]
        return VoicePage(voices, has_more=has_more)

    def count(self, owner: str) -> int:
        _check_namespace(owner)
        self._refresh()
        with self._index_lock:
            return len(self._index.by_name.get(owner, {}))

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
        samples, meta = new_voice(
            owner,
            name,
            samples,
            sample_rate,
            transcript=transcript,
            transcript_source=transcript_source,
            quality=quality,
        )
        with self._mutating():
            self._refresh()  # another process may have written since: the lock makes this exact
            with self._index_lock:
                names = self._index.by_name.get(owner, {})
                taken, held = name in names, len(names)
            if taken:
                raise ConflictError(f"A voice named '{name}' already exists.", param="name")
            if self.max_per_namespace and held >= self.max_per_namespace:
                raise quota_error(self.max_per_namespace)
            ns_dir = self.root / owner
            ns_dir.mkdir(exist_ok=True)
            voice_id = meta.id
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
            # the voice is on disk: index it, then publish the change (a failure here only makes
            # other processes rebuild later; this one's index is already right)
            with self._index_lock:
                self._index.add(meta)
            with contextlib.suppress(OSError):
                self._bump_generation()
            return meta

    def delete(self, owner: str, key: str, *, admin: bool = False) -> VoiceMeta:
        with self._mutating():
            self._refresh()
            meta = self.get(owner, key, admin=admin)
            ns_dir = self.root / meta.owner
            trash = ns_dir / f".del-{meta.id}-{secrets.token_hex(4)}"
            try:
                os.rename(ns_dir / meta.id, trash)
            except FileNotFoundError:
                with self._index_lock:
                    self._index.remove(meta.id)
                raise _not_found() from None
            _fsync_dir(ns_dir)
            with self._index_lock:
                self._index.remove(meta.id)
            with contextlib.suppress(OSError):
                self._bump_generation()
            shutil.rmtree(trash, ignore_errors=True)
            return meta
