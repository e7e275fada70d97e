"""Kokoro word timings from the model's own predicted durations.

What the installed pieces expose (checked with kokoro-onnx 0.6.1 and the offline
``kokoro-v1.0.int8`` model):

* the ONNX graph's only output is ``audio``; the durations are computed inside it
  (``duration_proj → Sigmoid → ReduceSum → Div(speed) → Round → Clip(min 1)``, then ``Cast`` and
  ``CumSum`` build the alignment matrix). One duration per token, the two pad tokens included,
  in frames of 600 samples at 24 kHz (the audio is exactly ``600 · Σ durations`` samples); the
  division by ``speed`` happens before rounding, so the durations already respect the speed;
* kokoro-onnx reports phoneme timings (``Kokoro.create_timed``) when the graph has an output
  named ``duration``, accounting itself for batching, trimmed edge silence and the pauses it
  inserts after punctuation.

So :func:`timed_model` copies the graph once with that internal tensor exposed as an extra output
``duration`` (needs the ``onnx`` package; written atomically into the cache), and
:class:`KokoroTimer` synthesises through kokoro-onnx on it: the audio it returns is the audio the
timings describe. Phonemes are mapped to words by phonemising each word on its own with the same
phonemizer (espeak-ng through ``phonemizer``, as kokoro-onnx does) and aligning those per-word
phonemes to the phoneme words the model spoke (:func:`api.captions.align.align_words`, so a word
espeak renders as two groups, such as a number, still gets one span).

Without ``onnx`` or without a duration tensor in the graph, :func:`durations_supported` is false
and the caller aligns Kokoro's audio with Whisper instead (:mod:`api.captions.align`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from api.captions.align import align_words
from api.captions.words import TextWord, TimedWord, split_words
from api.timing import Word

log = logging.getLogger(__name__)

SAMPLE_RATE = 24000
#: Samples per predicted duration frame (verified against the model: len(audio) = 600·Σd).
FRAME_SAMPLES = 600
DURATION_OUTPUT = "duration"
_PUNCTUATION = frozenset(";:,.!?¡¿—…\"«»“”()[]{}-'‘’ ")
_STRESS = str.maketrans("", "", "ˈˌ")
_build_lock = threading.Lock()


def find_duration_tensor(graph: Any) -> str | None:
    """The name of the per-token duration tensor in a Kokoro ONNX graph, or None.

    Found structurally: the ``Div`` by the ``speed`` input, then the ``Round`` (and ``Clip``)
    that consume it; the last of those is the integer-valued duration per token.
    """
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        if node.op_type == "Div" and len(node.input) == 2 and node.input[1] == "speed":
            current = node.output[0]
            found = None
            for op in ("Round", "Clip"):
                nxt = [c for c in consumers.get(current, []) if c.op_type == op]
                if not nxt:
                    break
                current = found = nxt[0].output[0]
            if found is not None:
                return found
    return None


def timed_model(model_path: Path, cache_dir: Path) -> Path | None:
    """A copy of the Kokoro model with the durations as output ``duration`` (made once), or None.

    None when the ``onnx`` package is missing or the graph has no recognisable duration tensor.
    A model that already outputs ``duration`` is returned as is. The copy is named after the
    source's path, size and modification time, so a replaced model file gets a new copy.
    """
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:
        log.info("the onnx package is missing: Kokoro timings fall back to alignment")
        return None
    st = Path(model_path).stat()
    tag = hashlib.sha256(f"{Path(model_path).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[
        :12
    ]
    out = Path(cache_dir) / "kokoro" / f"{Path(model_path).stem}.{tag}.timed.onnx"
    if out.is_file():
        return out
    with _build_lock:
        if out.is_file():
            return out
        model = onnx.load(str(model_path))
        names = {o.name for o in model.graph.output}
        if DURATION_OUTPUT in names:
            return Path(model_path)
        tensor = find_duration_tensor(model.graph)
        if tensor is None:
            log.warning("no duration tensor found in %s", model_path)
            return None
        model.graph.node.append(helper.make_node("Identity", [tensor], [DURATION_OUTPUT]))
        model.graph.output.append(helper.make_tensor_value_info(DURATION_OUTPUT, TensorProto.FLOAT, None))
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".timed-", suffix=".onnx")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(model.SerializeToString())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return out


def durations_supported(model_path: Path, cache_dir: Path) -> bool:
    """True when Kokoro's durations can be exposed for this model (see :func:`timed_model`)."""
    return timed_model(model_path, cache_dir) is not None


def _phoneme_words(timings: list[Any]) -> list[Word]:
    """Group kokoro-onnx phoneme timings into spoken words (split at spaces; marks excluded)."""
    words: list[Word] = []
    text: list[str] = []
    start = end = None
    for t in timings:
        if t.phoneme == " ":
            if text and start is not None and end is not None:
                words.append(Word(start, end, "".join(text)))
            text, start, end = [], None, None
            continue
        if t.phoneme in _PUNCTUATION:
            continue
        text.append(t.phoneme)
        start = t.start if start is None else start
        end = t.end
    if text and start is not None and end is not None:
        words.append(Word(start, end, "".join(text)))
    return [Word(w.start, w.end, w.text.translate(_STRESS)) for w in words]


class KokoroTimer:
    """Kokoro synthesis that also returns word timings from the model's durations.

    ``session``: an ``onnxruntime.InferenceSession`` on :func:`timed_model`'s file;
    ``voices_path``: the voice pack (as for :class:`api.engines.kokoro.KokoroEngine`).
    Thread-safe (ONNX Runtime sessions run concurrently; phonemisation is serialised).
    """

    def __init__(self, session: Any, voices_path: Path) -> None:
        from kokoro_onnx import Kokoro

        self.kokoro = Kokoro.from_session(session, str(voices_path))
        if not getattr(self.kokoro, "has_timings", False):
            raise ValueError("the Kokoro session does not output durations (use timed_model())")

    @classmethod
    def from_paths(
        cls, model_path: Path, voices_path: Path, cache_dir: Path, threads: int = 0
    ) -> KokoroTimer:
        """Build the timed model (once, cached) and a session on it; ValueError when unsupported."""
        import onnxruntime as ort

        path = timed_model(model_path, cache_dir)
        if path is None:
            raise ValueError("this Kokoro model cannot report durations")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        providers = [p for p in ("CUDAExecutionProvider",) if p in ort.get_available_providers()]
        providers.append("CPUExecutionProvider")  # as api.engines.kokoro does
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        return cls(session, voices_path)

    def style(self, name: str) -> np.ndarray:
        return np.asarray(self.kokoro.get_voice_style(name), dtype=np.float32)

    def _phonemize_words(self, words: list[TextWord], lang: str) -> list[str]:
        import phonemizer
        from kokoro_onnx import tokenizer as ktok

        lock = getattr(ktok, "_espeak_lock", None) or threading.Lock()
        with lock:
            out = phonemizer.phonemize(
                [w.text for w in words], lang, preserve_punctuation=True, with_stress=True
            )
        vocab = self.kokoro.tokenizer.vocab
        result = []
        for ph in out:
            kept = "".join(p for p in ph if (p in vocab and p not in _PUNCTUATION) or p == " ")
            result.append(" ".join(kept.translate(_STRESS).split()))
        return result

    def synthesize(
        self,
        text: str,
        style: np.ndarray,
        *,
        speed: float = 1.0,
        lang: str = "en-us",
        char_offset: int = 0,
        time_offset: float = 0.0,
    ) -> tuple[np.ndarray, int, list[TimedWord]]:
        """Audio (float32 ``(n,)``), its rate and one timing per word of ``text`` (in order).

        ``char_offset``/``time_offset``: where ``text`` and its audio start in the whole request.
        """
        audio, rate, timings = self.kokoro.create_timed(text, voice=style, speed=float(speed), lang=lang)
        audio = np.asarray(audio, dtype=np.float32).ravel()
        words = split_words(text, offset=char_offset)
        if not words:
            return audio, int(rate), []
        spoken = _phoneme_words(list(timings))
        expected = self._phonemize_words(words, lang)
        known = [
            TextWord(p or w.text, w.char_start, w.char_end) for p, w in zip(expected, words, strict=True)
        ]
        duration = audio.size / rate
        timed = align_words(known, spoken, duration, offset=time_offset)
        return (
            audio,
            int(rate),
            [
                TimedWord(w.text, t.start, t.end, t.char_start, t.char_end)
                for w, t in zip(words, timed, strict=True)
            ],
        )
