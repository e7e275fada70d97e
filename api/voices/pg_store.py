"""The voice store in PostgreSQL (``VOICE_STORE_URL=postgresql://…``), shared by every replica.

A voice is one row: metadata and audio (16-bit PCM, as the file store keeps it) written in one
transaction, so a voice is either wholly there or absent (a replica killed mid-registration leaves
nothing behind). The database enforces unique ``(namespace, name)``; per-namespace quotas are
checked under a transaction-scoped advisory lock on the namespace, so two replicas cannot both
take the last slot. Connections come from a bounded pool (psycopg 3).

The schema is created by the app on start, idempotently: numbered migrations recorded in
``zv_migrations``, applied under an advisory lock so replicas starting together do not race.
An unreachable database is a 503 (never a silent fallback to local files).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

from api.errors import ConflictError, InvalidRequestError, NotFoundError, ServiceUnavailableError
from api.voices.store import (
    TranscriptSource,
    VoiceMeta,
    VoicePage,
    is_voice_id,
    new_voice,
    quota_error,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: (version, SQL): append only; applied in order, each once.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE zv_voices (
            id text PRIMARY KEY,
            namespace text NOT NULL,
            name text NOT NULL,
            created_at text NOT NULL,
            duration double precision NOT NULL,
            sample_rate integer NOT NULL,
            channels integer NOT NULL,
            transcript text,
            transcript_source text,
            quality jsonb NOT NULL DEFAULT '{}'::jsonb,
            audio bytea NOT NULL,
            CONSTRAINT zv_voices_namespace_name UNIQUE (namespace, name)
        );
        CREATE INDEX zv_voices_order ON zv_voices (namespace, created_at, id);
        CREATE INDEX zv_voices_global_order ON zv_voices (created_at, id);
        """,
    ),
]
_MIGRATION_LOCK = 0x7A76_0001  # pg_advisory_xact_lock key for migrations
_META_COLUMNS = (
    "id, name, namespace, created_at, duration, sample_rate, channels, transcript, transcript_source, quality"
)


def _unavailable() -> ServiceUnavailableError:
    return ServiceUnavailableError(
        "The voice store (PostgreSQL) is unreachable; retry shortly.", code="store_unavailable"
    )


def _not_found() -> NotFoundError:
    return NotFoundError("Voice not found.", param="voice", code="voice_not_found")


def _meta(row: tuple[Any, ...]) -> VoiceMeta:
    quality = row[9]
    if isinstance(quality, str):
        quality = json.loads(quality)
    return VoiceMeta(
        id=row[0],
        name=row[1],
        owner=row[2],
        created_at=row[3],
        duration=float(row[4]),
        sample_rate=int(row[5]),
        channels=int(row[6]),
        transcript=row[7],
        transcript_source=row[8],
        quality=dict(quality or {}),
    )


class PostgresVoiceStore:
    """:class:`~api.voices.store.VoiceStore` on PostgreSQL (psycopg 3, pooled)."""

    def __init__(
        self,
        url: str,
        *,
        max_per_namespace: int = 0,
        pool_size: int = 8,
        timeout: float = 5.0,
        migrate: bool = True,
    ) -> None:
        from psycopg_pool import ConnectionPool

        self.max_per_namespace = max_per_namespace
        self._timeout = timeout
        self._pool = ConnectionPool(
            url,
            min_size=0,
            max_size=max(1, pool_size),
            timeout=timeout,
            kwargs={"connect_timeout": max(1, int(timeout)), "autocommit": False},
            open=True,
        )
        self._migrated = False
        if migrate:
            try:
                self.migrate()
            except ServiceUnavailableError:
                log.warning("voice store: PostgreSQL unreachable at start; will migrate on first use")

    # -- plumbing -------------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """A connection in a transaction (committed on success); DB errors → 503."""
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self._pool.connection() as conn, conn.transaction():
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout):
            raise _unavailable() from None

    def _run(self, fn: Callable[[Any], T]) -> T:
        if not self._migrated:
            self.migrate()
        with self._tx() as conn:
            return fn(conn)

    def migrate(self) -> None:
        """Create or upgrade the schema (idempotent; safe when replicas start together)."""
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS zv_migrations (version integer PRIMARY KEY)")
            done = {r[0] for r in conn.execute("SELECT version FROM zv_migrations").fetchall()}
            for version, sql in MIGRATIONS:
                if version not in done:
                    conn.execute(sql)
                    conn.execute("INSERT INTO zv_migrations (version) VALUES (%s)", (version,))
                    log.info("voice store: applied migration %d", version)
        self._migrated = True

    def ping(self) -> None:
        """Raise 503 when the database cannot be reached."""
        with self._tx() as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        self._pool.close()

    # -- reading --------------------------------------------------------------------------------
    def find(self, owner: str, key: str, *, admin: bool = False) -> VoiceMeta | None:
        if not isinstance(key, str) or not key:
            return None

        def run(conn: Any) -> VoiceMeta | None:
            if is_voice_id(key):
                row = conn.execute(f"SELECT {_META_COLUMNS} FROM zv_voices WHERE id = %s", (key,)).fetchone()
                if row is not None and (admin or row[2] == owner):
                    return _meta(row)
            row = conn.execute(
                f"SELECT {_META_COLUMNS} FROM zv_voices WHERE namespace = %s AND name = %s", (owner, key)
            ).fetchone()
            if row is not None:
                return _meta(row)
            if admin:
                rows = conn.execute(
                    f"SELECT {_META_COLUMNS} FROM zv_voices WHERE name = %s AND namespace <> %s LIMIT 2",
                    (key, owner),
                ).fetchall()
                if len(rows) > 1:
                    raise ConflictError(
                        "Several namespaces have a voice with this name; use its id.", param="voice"
                    )
                if rows:
                    return _meta(rows[0])
            return None

        return self._run(run)

    def get(self, owner: str, key: str, *, admin: bool = False) -> VoiceMeta:
        meta = self.find(owner, key, admin=admin)
        if meta is None:
            raise _not_found()
        return meta

    def list(
        self, owner: str, *, admin: bool = False, limit: int | None = None, after: str | None = None
    ) -> VoicePage:
        def run(conn: Any) -> VoicePage:
            args: list[Any] = [] if admin else [owner]
            where = "TRUE" if admin else "namespace = %s"
            if after is not None:
                row = conn.execute(
                    f"SELECT created_at, id FROM zv_voices WHERE id = %s AND {where}", [after, *args]
                ).fetchone()
                if row is None:
                    raise InvalidRequestError(
                        "'after' must be the id of a voice from an earlier page.", param="after"
                    )
                where += " AND (created_at, id) > (%s, %s)"
                args += [row[0], row[1]]
            sql = f"SELECT {_META_COLUMNS} FROM zv_voices WHERE {where} ORDER BY created_at, id"
            if limit is not None:
                sql += " LIMIT %s"
                args.append(max(0, limit) + 1)
            rows = conn.execute(sql, args).fetchall()
            more = limit is not None and len(rows) > max(0, limit)
            return VoicePage([_meta(r) for r in rows[: len(rows) - 1 if more else None]], has_more=more)

        return self._run(run)

    def count(self, owner: str) -> int:
        return int(
            self._run(
                lambda c: c.execute(
                    "SELECT count(*) FROM zv_voices WHERE namespace = %s", (owner,)
                ).fetchone()[0]
            )
        )

    def load_audio(self, meta: VoiceMeta) -> tuple[np.ndarray, int]:
        row = self._run(
            lambda c: c.execute(
                "SELECT audio, channels, sample_rate FROM zv_voices WHERE id = %s", (meta.id,)
            ).fetchone()
        )
        if row is None:
            raise _not_found()
        audio, channels, rate = row
        pcm = np.frombuffer(bytes(audio), dtype="<i2").reshape(-1, int(channels)).T
        return pcm.astype(np.float32) / 32767.0, int(rate)

    # -- writing --------------------------------------------------------------------------------
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
        import psycopg
        from psycopg.types.json import Jsonb

        samples, meta = new_voice(
            owner,
            name,
            samples,
            sample_rate,
            transcript=transcript,
            transcript_source=transcript_source,
            quality=quality,
        )
        pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").T.tobytes()

        def run(conn: Any) -> VoiceMeta:
            # serialize creates per namespace (quota), across replicas
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (owner,))
            if self.max_per_namespace:
                n = conn.execute("SELECT count(*) FROM zv_voices WHERE namespace = %s", (owner,)).fetchone()[
                    0
                ]
                if n >= self.max_per_namespace:
                    raise quota_error(self.max_per_namespace)
            try:
                conn.execute(
                    "INSERT INTO zv_voices (id, namespace, name, created_at, duration, sample_rate, channels,"
                    " transcript, transcript_source, quality, audio)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        meta.id,
                        owner,
                        name,
                        meta.created_at,
                        meta.duration,
                        meta.sample_rate,
                        meta.channels,
                        meta.transcript,
                        meta.transcript_source,
                        Jsonb(meta.quality),
                        pcm,
                    ),
                )
            except psycopg.errors.UniqueViolation:
                raise ConflictError(f"A voice named '{name}' already exists.", param="name") from None
            return meta

        return self._run(run)

    def delete(self, owner: str, key: str, *, admin: bool = False) -> VoiceMeta:
        meta = self.get(owner, key, admin=admin)

        def run(conn: Any) -> VoiceMeta:
            gone = conn.execute("DELETE FROM zv_voices WHERE id = %s RETURNING id", (meta.id,)).fetchone()
            if gone is None:
                raise _not_found()
            return meta

        return self._run(run)
