"""FileVoiceStore: layout, validation, namespaces, atomicity and crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import api.voices.store as store_mod
from api.auth import DEFAULT_NAMESPACE, owner_for_key
from api.errors import ConflictError, InvalidRequestError, NotFoundError, PermissionDeniedError
from api.voices.store import FileVoiceStore, VoicePage, is_voice_id

REPO = Path(__file__).resolve().parents[2]


def tone(seconds: float = 0.5, rate: int = 16000, channels: int = 1, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels)


@pytest.fixture
def store(tmp_path: Path) -> FileVoiceStore:
    return FileVoiceStore(tmp_path / "voices")


def test_create_layout_and_roundtrip(store: FileVoiceStore) -> None:
    audio = tone(channels=2)
    meta = store.create(
        "default",
        "Alice 1",
        audio,
        16000,
        transcript="hello",
        transcript_source="given",
        quality={"snr_db": 30.0},
    )
    assert is_voice_id(meta.id)
    vdir = store.root / "default" / meta.id
    assert sorted(p.name for p in vdir.iterdir()) == ["audio.wav", "meta.json"]
    on_disk = json.loads((vdir / "meta.json").read_text())
    assert set(on_disk) >= {
        "id",
        "name",
        "created_at",
        "transcript",
        "transcript_source",
        "duration",
        "sample_rate",
        "channels",
        "quality",
        "owner",
    }
    assert on_disk["owner"] == "default" and on_disk["channels"] == 2 and on_disk["duration"] == 0.5
    samples, rate = store.load_audio(store.get("default", "Alice 1"))
    assert rate == 16000 and samples.shape == audio.shape and samples.dtype == np.float32
    assert np.max(np.abs(samples - audio)) < 1e-4
    assert store.get("default", meta.id) == meta


@pytest.mark.parametrize(
    "name",
    ["", "a" * 65, ".", "..", "...", "a/b", "a\\b", "../x", "a\x00b", " lead", "trail ", "é", "a:b", "a\nb"],
)
def test_invalid_names_are_400(store: FileVoiceStore, name: str) -> None:
    with pytest.raises(InvalidRequestError):
        store.create("default", name, tone(), 16000)
    assert store.list("default") == VoicePage([])


@pytest.mark.parametrize("name", ["a", "a" * 64, "My voice_2.0-final", ".hidden", "x..y"])
def test_valid_names(store: FileVoiceStore, name: str) -> None:
    created = store.create("default", name, tone(), 16000)
    assert store.get("default", name).id == created.id


def test_duplicate_name_in_namespace_is_409(store: FileVoiceStore) -> None:
    store.create("default", "bob", tone(), 16000)
    with pytest.raises(ConflictError) as info:
        store.create("default", "bob", tone(), 16000)
    assert info.value.status_code == 409
    store.create("other", "bob", tone(), 16000)  # another namespace may reuse it
    assert store.count("default") == 1


def test_ids_are_unique_url_safe() -> None:
    ids = {store_mod.new_voice_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(is_voice_id(i) and i.isascii() and "/" not in i and "+" not in i for i in ids)


def test_namespaces_are_isolated_and_admin_sees_all(store: FileVoiceStore) -> None:
    a, b = owner_for_key("key-a"), owner_for_key("key-b")
    assert a != b and "key" not in a
    va = store.create(a, "voice", tone(), 16000)
    vb = store.create(b, "voice", tone(), 16000)
    assert [m.id for m in store.list(a).voices] == [va.id]
    assert store.find(a, vb.id) is None  # not by id
    with pytest.raises(NotFoundError):
        store.get(a, vb.id)
    with pytest.raises(NotFoundError):
        store.delete(a, vb.id)
    assert store.get(b, vb.id) == vb
    assert {m.id for m in store.list(a, admin=True).voices} == {va.id, vb.id}
    assert store.get(a, vb.id, admin=True) == vb
    assert store.get(a, "voice", admin=True) == va  # own namespace first
    with pytest.raises(ConflictError):  # ambiguous across other namespaces
        store.get(owner_for_key("admin"), "voice", admin=True)


def test_bad_namespace_rejected(store: FileVoiceStore) -> None:
    for ns in ("../x", "", "A", "a/b", ".tmp"):
        with pytest.raises(ValueError):
            store.list(ns)


def test_lookup_never_builds_paths_from_untrusted_keys(store: FileVoiceStore) -> None:
    store.create("default", "v", tone(), 16000)
    for key in ("../default", "..", "/etc/passwd", "voice_../../../../x", ""):
        assert store.find("default", key) is None


def test_delete_and_missing(store: FileVoiceStore) -> None:
    meta = store.create("default", "gone", tone(), 16000)
    assert store.delete("default", "gone") == meta
    assert not (store.root / "default" / meta.id).exists()
    with pytest.raises(NotFoundError):
        store.get("default", meta.id)
    with pytest.raises(NotFoundError):
        store.delete("default", meta.id)
    store.create("default", "gone", tone(), 16000)  # the name is free again


# --- atomicity -------------------------------------------------------------------------------------


def test_failure_mid_write_leaves_earlier_voices_and_no_partial(
    store: FileVoiceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = [store.create("default", f"v{i}", tone(freq=200 + i), 16000) for i in range(3)]
    real_write = store_mod._write_bytes
    calls = {"n": 0}

    def failing_write(path: Path, data: bytes) -> None:
        calls["n"] += 1
        if path.name == "meta.json":  # audio already written: fail half-way through the metadata
            with open(path, "xb") as f:
                f.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(store_mod, "_write_bytes", failing_write)
    with pytest.raises(OSError):
        store.create("default", "broken", tone(), 16000)
    assert calls["n"] == 2
    monkeypatch.setattr(store_mod, "_write_bytes", real_write)

    assert store.find("default", "broken") is None
    assert [m.id for m in store.list("default").voices] == [m.id for m in before]
    assert sorted(p.name for p in (store.root / "default").iterdir()) == sorted(m.id for m in before)
    for m in before:
        samples, _ = store.load_audio(store.get("default", m.id))
        assert samples.shape[1] == 8000
    assert store.create("default", "broken", tone(), 16000).name == "broken"


def test_stale_temp_dirs_are_invisible_and_swept(tmp_path: Path) -> None:
    s = FileVoiceStore(tmp_path)
    keep = s.create("default", "keep", tone(), 16000)
    junk = tmp_path / "default" / ".tmp-voice_AAAAAAAAAAAAAAAA-dead"
    junk.mkdir()
    (junk / "audio.wav").write_bytes(b"partial")
    assert [m.id for m in s.list("default").voices] == [keep.id]
    FileVoiceStore(tmp_path)
    assert not junk.exists()


def test_concurrent_creates_same_name_one_wins(store: FileVoiceStore) -> None:
    results: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            store.create("default", "race", tone(0.1), 16000)
            outcome = "ok"
        except ConflictError:
            outcome = "conflict"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 7 + ["ok"]
    assert store.count("default") == 1


def test_two_processes_share_a_root_without_duplicates(tmp_path: Path) -> None:
    script = (
        "import sys, numpy as np\n"
        "from api.voices.store import FileVoiceStore\n"
        "from api.errors import ConflictError\n"
        "s = FileVoiceStore(sys.argv[1])\n"
        "for i in range(15):\n"
        "    try: s.create('default', f'n{i}', np.zeros((1, 800), np.float32) + 0.1, 16000)\n"
        "    except ConflictError: pass\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=REPO) for _ in range(2)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    names = [m.name for m in FileVoiceStore(tmp_path).list("default").voices]
    assert sorted(names) == sorted(f"n{i}" for i in range(15))


_KILL_SCRIPT = """
import sys
import numpy as np
from api.voices.store import FileVoiceStore
s = FileVoiceStore(sys.argv[1])
rng = np.random.default_rng(int(sys.argv[2]))
i = 0
while True:
    audio = (rng.standard_normal((1, 48000)) * 0.1).astype(np.float32)  # 3 s: writes take a while
    m = s.create("default", f"s{sys.argv[2]}-{i}", audio, 16000, transcript=f"t{i}", transcript_source="given")
    print(m.id, flush=True)
    i += 1
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_mid_registration_loses_nothing(tmp_path: Path, seed: int) -> None:
    root = tmp_path / "voices"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(root), str(seed)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    done: list[str] = []
    try:
        while len(done) < 4 + seed:
            line = proc.stdout.readline()
            assert line, "registration subprocess died"
            done.append(line.strip())
        # kill while the next voice is being written (its temp dir exists), if we catch it
        ns = root / "default"
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not any(p.name.startswith(".tmp-") for p in ns.iterdir()):
            pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    s = FileVoiceStore(root)
    listed = s.list("default").voices
    listed_ids = [m.id for m in listed]
    assert set(done) <= set(listed_ids)  # every acknowledged voice survived
    assert len(listed_ids) - len(done) <= 1  # at most the in-flight one, and only if it completed
    for meta in listed:  # everything visible is complete and loads
        samples, rate = s.load_audio(meta)
        assert rate == 16000 and samples.shape == (1, 48000)
        assert meta.transcript is not None
    assert not [p for p in (root / "default").iterdir() if p.name.startswith(".")]


# --- namespace function, index, quota, paging -------------------------------------------------


def test_one_namespace_function() -> None:
    """Namespaces come from api.auth.owner_for_key only (the store no longer has its own)."""
    assert not hasattr(store_mod, "namespace_for")
    assert owner_for_key(None) == owner_for_key("") == DEFAULT_NAMESPACE
    ns = owner_for_key("sk-secret-value")
    assert ns == owner_for_key("sk-secret-value") != owner_for_key("sk-other")
    assert "secret" not in ns and store_mod._NAMESPACE_RE.match(ns)


def test_lookups_read_one_meta_file(store: FileVoiceStore, monkeypatch: pytest.MonkeyPatch) -> None:
    metas = [store.create("default", f"v{i}", tone(0.05), 16000) for i in range(30)]
    reads: list[str] = []
    real = store_mod.FileVoiceStore._read_meta

    def counting(self: FileVoiceStore, voice_dir: Path) -> Any:
        reads.append(voice_dir.name)
        return real(self, voice_dir)

    monkeypatch.setattr(store_mod.FileVoiceStore, "_read_meta", counting)
    assert store.get("default", "v17").id == metas[17].id
    assert reads == [metas[17].id]
    reads.clear()
    assert store.find("default", "alloy") is None and reads == []  # a preset name: no disk read
    assert store.get("default", metas[3].id) == metas[3] and reads == [metas[3].id]
    reads.clear()
    assert [m.name for m in store.list("default", limit=2, after=metas[10].id).voices] == ["v11", "v12"]
    assert sorted(reads) == sorted([metas[11].id, metas[12].id])


def test_index_survives_restart_and_follows_other_processes(tmp_path: Path) -> None:
    a = FileVoiceStore(tmp_path)
    b = FileVoiceStore(tmp_path)  # another server process on the same root
    va = a.create("default", "from-a", tone(), 16000)
    assert b.get("default", "from-a") == va  # b notices a's write (generation token)
    with pytest.raises(ConflictError):
        b.create("default", "from-a", tone(), 16000)
    b.delete("default", "from-a")
    assert a.find("default", "from-a") is None
    vb = b.create("default", "again", tone(), 16000)
    restarted = FileVoiceStore(tmp_path)  # the index is rebuilt from disk
    assert restarted.get("default", "again") == vb and restarted.count("default") == 1


def test_quota_per_namespace(tmp_path: Path) -> None:
    s = FileVoiceStore(tmp_path, max_per_namespace=2)
    k1, k2 = owner_for_key("k1"), owner_for_key("k2")
    s.create(k1, "a", tone(), 16000)
    s.create(k1, "b", tone(), 16000)
    with pytest.raises(PermissionDeniedError) as err:
        s.create(k1, "c", tone(), 16000)
    assert err.value.status_code == 403 and "MAX_VOICES_PER_KEY" in err.value.message
    s.create(k2, "c", tone(), 16000)  # another key is unaffected
    s.delete(k1, "a")
    s.create(k1, "c", tone(), 16000)  # room again after a delete
    assert s.count(k1) == 2 and s.count(k2) == 1
    assert FileVoiceStore(tmp_path).count(k1) == 2


def test_paging(store: FileVoiceStore) -> None:
    made = [store.create("default", f"p{i}", tone(0.05), 16000) for i in range(5)]
    store.create("other", "elsewhere", tone(0.05), 16000)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = store.list("default", limit=2, after=after)
        pages += 1
        assert len(page.voices) <= 2
        seen += [m.id for m in page.voices]
        if not page.has_more:
            break
        after = page.voices[-1].id
    assert seen == [m.id for m in made] and pages == 3
    assert store.list("default").voices == made  # no limit: everything
    with pytest.raises(InvalidRequestError):
        store.list("default", after="voice_AAAAAAAAAAAAAAAA")
    other = store.list("other").voices[0].id
    with pytest.raises(InvalidRequestError):  # a cursor from another namespace is not accepted
        store.list("default", after=other)
    assert len(store.list("default", admin=True, limit=10).voices) == 6


def test_reads_during_writes_never_fail(store: FileVoiceStore) -> None:
    """Lookups and listings (admin: every namespace) run while other threads create and delete."""
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                store.list("default", admin=True, limit=5)
                store.find("default", "w3", admin=True)
                store.count("default")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def writer(ns: str) -> None:
        for i in range(12):
            store.create(ns, f"w{i}", tone(0.02), 16000)
            if i % 3 == 0:
                store.delete(ns, f"w{i}")

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(f"ns{j}",)) for j in range(3)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors
    assert [store.count(f"ns{j}") for j in range(3)] == [8, 8, 8]
