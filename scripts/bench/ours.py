"""One measurement of our ZipVoice engine as the server runs it (``split_for`` → ``synthesize``),
shared by the peers section's ONNX side and the upstream comparison's PyTorch side.

The project's engine modules are imported inside the function, in the measuring process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .harness import rss_now_mb


def measure_engine(
    settings: Any,
    variant: str,
    *,
    prompt_wav: Path,
    prompt_text: str,
    text: str,
    steps: int,
    digest_prefix: str,
    on_loaded: Callable[[Any], Any] | None = None,
    before_run: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Loads ``ZipVoiceEngine(settings, variant)``, runs one 1-step warm-up and one timed run of
    ``steps`` on the server's plan for ``text``; a new prompt digest per run, so the prompt is
    recomputed each time (as the peers do on every call). ``on_loaded(engine)`` runs once after
    loading; ``before_run()`` before each run."""
    from api.audio.decode import decode_audio
    from api.engines.base import ReferenceVoice, SynthesisOptions
    from api.engines.zipvoice import ZipVoiceEngine
    from api.synthesis.service import split_for

    engine = ZipVoiceEngine(settings, variant)
    t0 = time.perf_counter()
    engine.load()
    load_s = time.perf_counter() - t0
    rss_loaded = rss_now_mb()
    if on_loaded is not None:
        on_loaded(engine)
    x, sr = decode_audio(prompt_wav.read_bytes(), max_seconds=60, mono=True)
    chunks = split_for(engine, text, streaming=False)

    def run(n_steps: int, i: int) -> tuple[float, float]:
        voice = ReferenceVoice(
            samples=x, sample_rate=sr, transcript=prompt_text, digest=f"{digest_prefix}-{i}", source="file"
        )
        if before_run is not None:
            before_run()
        t = time.perf_counter()
        options = SynthesisOptions(seed=1, num_steps=n_steps)
        audio = sum(c.duration for c in engine.synthesize(chunks, voice, options))
        return time.perf_counter() - t, audio

    run(1, 0)
    elapsed, audio_s = run(steps, 1)
    return {"load_s": load_s, "rss_loaded_mb": rss_loaded, "run_s": elapsed, "audio_s": audio_s}
