"""Round-trip intelligibility: synthesize sentences with a backend, transcribe them with Whisper,
print WER per sentence and overall.

    python scripts/eval_roundtrip.py --model kokoro --voice jm_kumo
    python scripts/eval_roundtrip.py --model zipvoice_distill --prompt-wav ref.wav --prompt-text "..." \\
        --zipvoice-model-dir /models/zipvoice --vocos-dir /models/vocos   # real weights only

Random-weight ZipVoice checkpoints produce noise, so their WER is meaningless; use real weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "A speech server should sound natural and respond quickly.",
    "She sells sea shells by the sea shore.",
    "The weather today is sunny with a light breeze from the west.",
    "Open the window and let some fresh air into the room.",
]


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from api.audio.decode import decode_audio
    from api.engines.base import PresetVoice, ReferenceVoice, SynthesisOptions, Voice
    from api.engines.registry import EngineRegistry
    from api.settings import Settings
    from api.text.wer import wer
    from api.transcribe.factory import build_transcriber
    from api.voices.sources import audio_digest

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="kokoro")
    p.add_argument("--voice", default="jm_kumo", help="preset voice (Kokoro)")
    p.add_argument("--prompt-wav", type=Path, help="reference clip (ZipVoice)")
    p.add_argument("--prompt-text", help="its transcript (ZipVoice)")
    p.add_argument("--zipvoice-model-dir", type=Path)
    p.add_argument("--vocos-dir", type=Path)
    p.add_argument("--whisper-model", default="base")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    updates: dict[str, object] = {"whisper_model": args.whisper_model}
    if args.zipvoice_model_dir:
        updates["zipvoice_model_dir"] = args.zipvoice_model_dir
    if args.vocos_dir:
        updates["vocos_model_dir"] = args.vocos_dir
    settings = Settings().model_copy(update=updates)
    engine = EngineRegistry(settings).loaded(args.model)
    voice: Voice
    if engine.voice_kind == "clone":
        if not args.prompt_wav:
            p.error("--prompt-wav is required for a cloning model")
        samples, rate = decode_audio(args.prompt_wav.read_bytes(), max_seconds=60)
        voice = ReferenceVoice(samples, rate, args.prompt_text, audio_digest(samples, rate), "file")
    else:
        voice = PresetVoice(args.voice)
    transcriber = build_transcriber(settings)
    if transcriber is None:
        print("faster-whisper is not installed (install the 'whisper' extra)", file=sys.stderr)
        return 2
    rows = []
    for sentence in SENTENCES:
        chunks = list(engine.synthesize([sentence], voice, SynthesisOptions(seed=args.seed)))
        audio = np.concatenate([c.samples for c in chunks], axis=-1)
        heard = transcriber.transcribe(audio, chunks[0].sample_rate, language="en").text.strip()
        rows.append((sentence, heard, wer(sentence, heard)))
    print("| model | sentence | heard | WER |\n|---|---|---|---|")
    for sentence, heard, w in rows:
        print(f"| {args.model} | {sentence} | {heard} | {w:.1%} |")
    overall = wer(" ".join(r[0] for r in rows), " ".join(r[1] for r in rows))
    print(f"\noverall WER ({args.model}, whisper {args.whisper_model}): {overall:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
