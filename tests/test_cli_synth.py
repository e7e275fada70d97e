"""``zipvoice-synth`` goes through the server's pipeline (``SpeechService.synthesize`` with a
``SpeechJob``): here on a fake engine registered under the ``zipvoice`` name."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.cli import synth
from api.engines import registry
from api.engines.base import ReferenceVoice
from tests.synthesis.fakes import CHUNK_SAMPLES, FakeEngine, speechlike, wav_bytes


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine("zipvoice")
    monkeypatch.setitem(
        registry.ENGINES, "zipvoice", registry.EngineSpec("zipvoice", lambda _s: fake, "fake")
    )
    return fake


def test_synth_writes_the_whole_file_through_the_pipeline(
    engine: FakeEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompt = tmp_path / "prompt.wav"
    prompt.write_bytes(wav_bytes(speechlike(2.0), 16000))
    out = tmp_path / "out.wav"
    text = "First sentence here. Second one follows."
    synth(
        [
            *("--prompt-wav", str(prompt), "--prompt-text", "What the prompt says.", "--text", text),
            *("--out", str(out), "--num-steps", "3", "--seed", "5"),
        ]
    )
    (call,) = engine.calls
    assert call.chunks == [text]  # a whole run: not split at the first clause
    assert isinstance(call.voice, ReferenceVoice)
    assert call.voice.source == "file" and call.voice.transcript == "What the prompt says."
    assert (call.options.num_steps, call.options.seed) == (3, 5)
    data = out.read_bytes()
    assert data[:4] == b"RIFF" and len(data) >= 2 * CHUNK_SAMPLES
    assert "wrote" in capsys.readouterr().out


def test_synth_reports_a_missing_prompt_in_one_line(
    engine: FakeEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        synth(
            [
                *("--prompt-wav", str(tmp_path / "none.wav"), "--prompt-text", "x", "--text", "Hi."),
                *("--out", str(tmp_path / "o.wav")),
            ]
        )
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("zipvoice-synth: Voice file not found.")
    assert not engine.calls


def test_synth_refuses_an_unknown_output_format(engine: FakeEngine, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        synth(
            ["--prompt-wav", "p.wav", "--prompt-text", "x", "--text", "Hi.", "--out", str(tmp_path / "o.xyz")]
        )
    assert info.value.code == 2 and not engine.calls
