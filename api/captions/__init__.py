"""Captioned speech: word timings and caption cues (issue 16, captions part).

A standalone room; the request pipeline (``api/synthesis/``, ``api/routes/speech.py``) wires it
in later. Pieces:

* :mod:`api.captions.words`: ``split_words(text, offset)`` → words with character offsets in
  ``input`` (punctuation attached); ``TimedWord`` (word, start, end, char_start, char_end).
* :mod:`api.captions.align`: ``align_audio(samples, rate, words, transcriber, offset=...)`` →
  one ``TimedWord`` per known word from Whisper's word timestamps (any engine, e.g. ZipVoice);
  ``align_words`` is the pure mapping (monotonic edit-distance alignment + interpolation).
* :mod:`api.captions.kokoro_timing`: Kokoro's own predicted durations. The offline ONNX model
  does not output them, but computes them inside; ``timed_model()`` exposes that tensor as an
  output ``duration`` (once, cached) and ``KokoroTimer.synthesize()`` returns audio plus word
  timings, with kokoro-onnx accounting for its batching, trimmed silence and inserted pauses.
* :mod:`api.captions.cues`: ``group_cues`` (≤ 42 chars × 2 lines, ≤ 6 s, sentence ends and
  pauses break cues, 0.8 s minimum) and ``render_srt`` / ``render_vtt`` / ``render``.

How the pipeline will call it, per chunk (everything blocking runs in the worker thread that
already runs the engine)::

    t = 0.0                                   # where the next chunk starts in the output (s)
    words: list[TimedWord] = []
    for chunk in plan.chunks:                 # chunk.text, chunk.char_start: its offset in input
        known = split_words(chunk.text, offset=chunk.char_start)
        if timer is not None:                 # Kokoro with durations: exact, no Whisper
            audio, rate, timed = timer.synthesize(chunk.text, style, speed=speed, lang=lang,
                                                  char_offset=chunk.char_start, time_offset=t)
        else:                                 # ZipVoice (or Kokoro without durations)
            audio, rate = <engine chunk>      # after the engine's own trimming / speed change
            timed = align_audio(audio, rate, known, transcriber, offset=t)
        # chunk joins: a cross-fade of `overlap` samples moves this chunk's start back by it;
        # silence the pipeline trims from the head of the chunk (`head` samples) moves every
        # word back by it, and words inside trimmed audio are clamped to its edges:
        #     timed = [w.shifted(-(overlap + head) / rate) for w in timed]
        # (do the alignment on the audio as it is emitted and none of this is needed: that is
        # the simplest correct order: engine → trim → speed → align → cross-fade → shift)
        words += timed
        t += (len(audio) - overlap) / rate    # the emitted length of this chunk
    # SSE: send each chunk's `timed` with its `speech.audio.delta`; at the end `words`, the
    # total duration, and `render(words, "srt" | "vtt", duration=total)` when asked for captions.

Speed: Kokoro applies it inside the model (durations are divided before rounding), so
``KokoroTimer`` timings already match; a post-hoc time stretch (ZipVoice) is best aligned after
the stretch, as above, or scaled by ``1 / speed`` when aligned before it.
"""
