"""The tiny reference checkpoints exported with ``zipvoice-export`` and laid out like the hub.

``k2-fsa/ZipVoice`` publishes, per variant folder, ``text_encoder.onnx``, ``fm_decoder.onnx``,
``text_encoder_int8.onnx``, ``fm_decoder_int8.onnx``, ``model.json`` and ``tokens.txt``;
:func:`official_hub` writes exactly that for the tiny fixtures (once per test session), plus the
tiny Vocos as ``charactr/vocos-mel-24khz`` (``config.yaml``, ``pytorch_model.bin``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

OFFICIAL_VARIANTS = ("zipvoice", "zipvoice_distill")
OFFICIAL_FILES = (
    "text_encoder.onnx",
    "fm_decoder.onnx",
    "text_encoder_int8.onnx",
    "fm_decoder_int8.onnx",
    "model.json",
    "tokens.txt",
)
PROMPT_TEXT = "The quick brown fox jumps over the lazy dog."


def official_hub(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Path:
    """``<root>/k2-fsa/ZipVoice/<variant>/…`` and ``<root>/charactr/vocos-mel-24khz/…``."""
    root = tmp_path_factory.getbasetemp() / "official-hub"
    done = root / ".done"
    if done.is_file():
        return root
    pytest.importorskip("onnx")
    script = Path(sys.executable).parent / "zipvoice-export"
    for variant in OFFICIAL_VARIANTS:
        out = root / "k2-fsa" / "ZipVoice" / variant
        cmd = (
            [str(script)]
            if script.is_file()
            else [sys.executable, "-c", "from api.cli import export; export()"]
        )
        subprocess.run(
            [*cmd, str(reference_dir / "models" / variant), "--out", str(out)],
            check=True,
            capture_output=True,
            timeout=600,
        )
        assert sorted(p.name for p in out.iterdir()) == sorted(OFFICIAL_FILES)
    vocos = root / "charactr" / "vocos-mel-24khz"
    vocos.mkdir(parents=True)
    for name in ("config.yaml", "pytorch_model.bin"):
        shutil.copyfile(reference_dir / "vocos-mel-24khz-tiny" / name, vocos / name)
    done.write_text("ok")
    return root
