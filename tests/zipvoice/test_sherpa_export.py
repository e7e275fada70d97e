"""``zipvoice-export --sherpa``: the output folder is a sherpa-onnx ZipVoice model directory.

Exports the tiny fixture checkpoint and the tiny Vocos, checks the vocoder graph against our
PyTorch Vocos, and has the real ``sherpa_onnx.OfflineTts`` (the C++ runtime) load the folder and
speak. sherpa-onnx draws its own noise (no seed), so its audio is checked for shape and sanity,
not compared sample by sample with our engine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
sherpa_onnx = pytest.importorskip("sherpa_onnx")

FIXTURES = Path("/work/shared/fixtures/zipvoice-reference")
MODEL = FIXTURES / "models" / "zipvoice_distill"
VOCOS = FIXTURES / "vocos-mel-24khz-tiny"

pytestmark = pytest.mark.skipif(not MODEL.is_dir() or not VOCOS.is_dir(), reason="fixtures missing")

TEXT = "This is a test of the speech model."
PROMPT_TEXT = "Hello there, good morning."


@pytest.fixture(scope="module")
def sherpa_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from api.cli import export

    out = tmp_path_factory.mktemp("sherpa")
    words = out.parent / "words.txt"
    words.write_text(f"{TEXT}\n{PROMPT_TEXT}\n", encoding="utf-8")
    export(
        [
            str(MODEL),
            "--out",
            str(out),
            "--int8-only",
            "--sherpa",
            "--vocos",
            str(VOCOS),
            "--lexicon-text",
            str(words),
        ]
    )
    return out


def test_layout(sherpa_dir: Path) -> None:
    names = {p.name for p in sherpa_dir.iterdir()}
    assert {
        "text_encoder_int8.onnx",
        "fm_decoder_int8.onnx",
        "tokens.txt",
        "vocos_24khz.onnx",
        "lexicon.txt",
    } <= names
    assert not any(".partial" in n for n in names)


def test_vocoder_graph_matches_torch_vocos(sherpa_dir: Path) -> None:
    import onnxruntime as ort
    import torch

    from api.zipvoice.vocos import load_vocos

    session = ort.InferenceSession(str(sherpa_dir / "vocos_24khz.onnx"), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["model_type"] == "vocos"
    assert (meta["n_fft"], meta["hop_length"], meta["win_length"]) == ("1024", "256", "1024")
    assert [i.name for i in session.get_inputs()] == ["mels"]
    assert [o.name for o in session.get_outputs()] == ["mag", "x", "y"]

    vocos = load_vocos(VOCOS)
    for frames in (7, 64):  # dynamic length
        mel = np.random.default_rng(frames).standard_normal((1, 100, frames), dtype=np.float32)
        mag, x, y = session.run(None, {"mels": mel})
        assert mag.shape == x.shape == y.shape == (1, 513, frames)
        np.testing.assert_allclose(x**2 + y**2, 1.0, atol=1e-4)  # cos/sin of one phase
        spec = torch.from_numpy(mag) * torch.complex(torch.from_numpy(x), torch.from_numpy(y))
        wav = torch.istft(spec, 1024, 256, 1024, torch.hann_window(1024), center=True)
        ref = vocos.decode(torch.from_numpy(mel))
        np.testing.assert_allclose(wav.numpy(), ref.numpy(), atol=1e-4, rtol=1e-3)


def test_lexicon_spells_words_with_model_tokens(sherpa_dir: Path) -> None:
    from api.zipvoice.tokenizer import EmiliaTokenizer

    tokenizer = EmiliaTokenizer(sherpa_dir / "tokens.txt")
    table = tokenizer.token2id
    entries = {}
    for line in (sherpa_dir / "lexicon.txt").read_text(encoding="utf-8").splitlines():
        word, *tokens = line.split(" ")
        entries[word] = tokens
        assert tokens and all(t in table for t in tokens), line
    for word in ("speech", "model", "hello", "morning"):  # from the --lexicon-text file
        assert entries[word] == [t for t in tokenizer.text_to_tokens(word) if t != " "]


def test_sherpa_onnx_loads_and_speaks(sherpa_dir: Path) -> None:
    d = sherpa_dir
    config = sherpa_onnx.OfflineTtsConfig(
        model=sherpa_onnx.OfflineTtsModelConfig(
            zipvoice=sherpa_onnx.OfflineTtsZipvoiceModelConfig(
                tokens=str(d / "tokens.txt"),
                encoder=str(d / "text_encoder_int8.onnx"),
                decoder=str(d / "fm_decoder_int8.onnx"),
                vocoder=str(d / "vocos_24khz.onnx"),
                lexicon=str(d / "lexicon.txt"),
            ),
            num_threads=1,
            provider="cpu",
        )
    )
    assert config.validate()
    tts = sherpa_onnx.OfflineTts(config)
    assert tts.sample_rate == 24000
    t = np.arange(24000 * 2, dtype=np.float32) / 24000
    gen = sherpa_onnx.GenerationConfig()
    gen.reference_audio = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32).tolist()
    gen.reference_sample_rate = 24000
    gen.reference_text = PROMPT_TEXT
    gen.num_steps = 4
    short = np.asarray(tts.generate("This is a test.", gen).samples, dtype=np.float32)
    long = np.asarray(tts.generate(TEXT, gen).samples, dtype=np.float32)
    for audio in (short, long):
        assert audio.size > 0 and np.isfinite(audio).all()
        assert np.abs(audio).max() > 0
    assert long.size > short.size  # more words, more audio: the lexicon was used
