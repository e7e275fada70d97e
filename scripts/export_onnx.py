"""Export a ZipVoice checkpoint to ONNX (same as the ``zipvoice-export`` console script).

    python scripts/export_onnx.py /path/to/zipvoice_distill [--out DIR] [--no-int8 | --int8-only]

Writes ``text_encoder.onnx``, ``fm_decoder.onnx``, ``text_encoder_int8.onnx`` and
``fm_decoder_int8.onnx`` (upstream's names, inputs and outputs). See docs/onnx.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.cli import export

if __name__ == "__main__":
    export(sys.argv[1:])
