"""Weights on first use from a local server that speaks the hub's file API (``HF_ENDPOINT``),
serving the tiny fixtures exported by ``zipvoice-export`` in the official layout; and an
unreachable hub answered fast (one probe, then 503 at once while the failure is remembered)."""

from __future__ import annotations

import base64
import hashlib
import socket
import time
from pathlib import Path

import huggingface_hub.constants  # noqa: F401  (read its env-derived defaults now, before tests patch HF_*)
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.engines.zipvoice import ZipVoiceEngine
from api.settings import Settings
from tests.zipvoice.hub_server import local_hub
from tests.zipvoice.official_layout import PROMPT_TEXT, official_hub

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Path:
    return official_hub(tmp_path_factory, reference_dir)


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return cache


def _settings(tmp_path: Path, **kw: object) -> Settings:
    base: dict[str, object] = {
        "allow_downloads": True,
        "cache_dir": tmp_path / "cache",
        "voices_dir": tmp_path / "voices",
        "num_threads": 1,
        "preload_models": [],
        "engine": "auto",
    }
    return Settings(**{**base, **kw})  # type: ignore[arg-type]


def _voice(reference_dir: Path) -> object:
    from api.audio.decode import decode_audio
    from api.engines.base import ReferenceVoice
    from api.voices.sources import audio_digest

    samples, rate = decode_audio((reference_dir / "audio" / "prompt.wav").read_bytes(), max_seconds=60)
    return ReferenceVoice(
        samples, rate, PROMPT_TEXT, audio_digest(samples, rate), "file", transcript_source="given"
    )


def _served(path: str) -> str:
    """``/org/repo/resolve/<revision>/<file>`` -> ``<file>``."""
    return path.split("/resolve/", 1)[1].split("/", 1)[1]


def test_missing_variant_is_downloaded_on_first_use(
    hub: Path, reference_dir: Path, tmp_path: Path, hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.engines.base import SynthesisOptions

    with local_hub(hub) as (url, state):
        monkeypatch.setenv("HF_ENDPOINT", url)
        engine = ZipVoiceEngine(_settings(tmp_path), "zipvoice_distill")
        avail = engine.availability()
        assert avail.ok and avail.reason == "weights will be downloaded on first use"
        assert engine.engine_choice().label == "onnx-int8 (cpu)"
        engine.load()
        got = {_served(path) for method, path, _ in state.requests if method == "GET" and "/resolve/" in path}
        assert got == {
            "zipvoice_distill/text_encoder_int8.onnx",
            "zipvoice_distill/fm_decoder_int8.onnx",
            "zipvoice_distill/model.json",
            "zipvoice_distill/tokens.txt",
            "config.yaml",
            "pytorch_model.bin",
        }  # int8 only (ONNX_PRECISION), no checkpoint
        audio = next(
            engine.synthesize(["Hello there."], _voice(reference_dir), SynthesisOptions(seed=1, num_steps=2))
        )  # type: ignore[arg-type]
        assert audio.samples.shape[-1] > 0 and np.isfinite(audio.samples).all()
        # the files are in the HF cache, byte-equal to the served ones
        snap = next(hf_cache.glob("models--k2-fsa--ZipVoice/snapshots/*/zipvoice_distill"))
        for name in ("fm_decoder_int8.onnx", "tokens.txt"):
            assert (snap / name).read_bytes() == (
                hub / "k2-fsa" / "ZipVoice" / "zipvoice_distill" / name
            ).read_bytes()
        before = len(state.requests)

    # a new engine finds everything in the cache, without the network (the server is gone)
    again = ZipVoiceEngine(_settings(tmp_path), "zipvoice_distill")
    assert again.availability() == avail.__class__(True, None)
    again.load()
    assert again.runtime == "onnx-int8 (cpu)" and len(state.requests) == before


def test_fp32_precision_fetches_the_fp32_graphs(
    hub: Path, tmp_path: Path, hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with local_hub(hub) as (url, state):
        monkeypatch.setenv("HF_ENDPOINT", url)
        engine = ZipVoiceEngine(_settings(tmp_path, onnx_precision="fp32"), "zipvoice")
        engine.load()
        got = {p.rsplit("/", 1)[1] for m, p, _ in state.requests if m == "GET" and "/resolve/" in p}
        assert {"text_encoder.onnx", "fm_decoder.onnx"} <= got
        assert not {"text_encoder_int8.onnx", "fm_decoder_int8.onnx"} & got
        assert engine.runtime == "onnx-fp32 (cpu)"


def test_interrupted_download_is_resumed_and_completes(
    hub: Path, tmp_path: Path, hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = (hub / "k2-fsa" / "ZipVoice" / "zipvoice_distill" / "fm_decoder_int8.onnx").read_bytes()
    with local_hub(hub) as (url, state):
        state.drop_once.add("fm_decoder_int8.onnx")  # the connection breaks half-way the first time
        monkeypatch.setenv("HF_ENDPOINT", url)
        ZipVoiceEngine(_settings(tmp_path), "zipvoice_distill").load()
        ranges = [r for m, p, r in state.requests if m == "GET" and p.endswith("/fm_decoder_int8.onnx")]
        # the client retries at once; it asks for a Range from the last whole chunk it stored
        # (10 MB chunks: for this small file that is byte 0, so no Range header)
        assert len(ranges) == 2 and ranges[0] is None
    blob = hf_cache / "models--k2-fsa--ZipVoice" / "blobs" / hashlib.sha256(data).hexdigest()
    assert blob.read_bytes() == data


def test_a_corrupt_download_is_rejected(
    hub: Path, tmp_path: Path, hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.errors import ServiceUnavailableError

    with local_hub(hub) as (url, state):
        real = state.sha256
        # the hub announces a different sha256 (same size): the bytes do not match it
        state.sha256 = lambda path: hashlib.sha256(b"x" + real(path).encode()).hexdigest()  # type: ignore[method-assign]
        monkeypatch.setenv("HF_ENDPOINT", url)
        engine = ZipVoiceEngine(_settings(tmp_path), "zipvoice_distill")
        with pytest.raises(ServiceUnavailableError, match="does not match"):
            engine.load()
    assert not list(hf_cache.glob("models--k2-fsa--ZipVoice/blobs/*[0-9a-f]"))


def _speech_body(reference_dir: Path) -> dict[str, str]:
    clip = base64.b64encode((reference_dir / "audio" / "prompt.wav").read_bytes()).decode()
    return {
        "model": "zipvoice_distill",
        "input": "Hello.",
        "voice": f"base64+{clip}",
        "prompt_text": PROMPT_TEXT,
    }


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_hub_answers_503_fast(
    reference_dir: Path, tmp_path: Path, hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    with TestClient(create_app(_settings(tmp_path))) as client:
        body = _speech_body(reference_dir)
        start = time.perf_counter()
        replies = [client.post("/v1/audio/speech", json=body) for _ in range(12)]
        elapsed = time.perf_counter() - start
        assert [r.status_code for r in replies] == [503] * 12
        message = replies[-1].json()["error"]["message"]
        assert "did not answer" in message and "text_encoder_int8.onnx" in message
        assert elapsed < 2.0, elapsed
        models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
        assert "did not answer" in (models["zipvoice_distill"].get("unavailable_reason") or "")


def test_a_failing_hub_is_probed_once_then_remembered(
    hub: Path, reference_dir: Path, tmp_path: Path, hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with local_hub(hub, fail=True) as (url, state):
        monkeypatch.setenv("HF_ENDPOINT", url)
        with TestClient(create_app(_settings(tmp_path))) as client:
            body = _speech_body(reference_dir)
            start = time.perf_counter()
            codes = [client.post("/v1/audio/speech", json=body).status_code for _ in range(12)]
            assert codes == [503] * 12 and time.perf_counter() - start < 2.0
            # (the hub client may also ask /api/agent-harnesses once a day: not a file request)
            files = [(m, p) for m, p, _ in state.requests if "/resolve/" in p]
            assert len(files) == 1 and files[0][0] == "HEAD"
            # after HUB_RETRY_AFTER_S the hub is probed again (and now answers)
        with TestClient(create_app(_settings(tmp_path, hub_retry_after_s=0))) as client:
            state.fail = False
            reply = client.post("/v1/audio/speech", json=body)
            assert reply.status_code == 200, reply.text
            assert len(reply.content) > 0
