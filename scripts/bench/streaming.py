"""Streaming section: time to first audio for a one-minute text vs its first chunk alone.

.venv/bin/python -m scripts.bench.streaming --repeats 3        # Kokoro, ZipVoice distill and zipvoice
.venv/bin/python -m scripts.bench.streaming --quick            # tiny ZipVoice checkpoint, shorter text

Each backend: one long streamed request (pcm; time to first audio = the first non-empty body chunk)
and one whole request for just its first chunk, as the server plans it (``split_for`` with the
engine's own chunk limit, ``streaming=True``), interleaved (long/alone, then alone/long, ...).
ZipVoice runs on the ONNX Runtime int8 engine (``ENGINE=onnx``, ``ONNX_PRECISION=int8``) on the
harness's full-size random-weight checkpoints (``--quick``: the tiny ones), with a voice registered
once from the fixture prompt and its transcript; the warm-up request prepares that prompt (the
server's prompt cache keeps it), so neither side pays for it afterwards.
"""

from __future__ import annotations

import argparse
import base64
import time
from typing import Any

from bench_lib.assets import PROMPT_TEXT, ensure_assets, prompt_wav
from bench_lib.stats import fmt, summary

from .harness import NoteOf, interleaved, log, main_for, num, pcm_seconds, section, server, speech, text_of

GOAL_TTFA_RATIO = 1.3
#: sampler steps of each ZipVoice row (the variants' defaults)
ZV_STEPS = {"zipvoice_distill": 8, "zipvoice": 16}
VOICE = "bench-prompt"
KOKORO_VOICE = "jm_kumo"


def first_chunk(backend: str, text: str) -> str:
    """The first chunk the server's plan gives a streamed request for ``text`` on ``backend``: the same
    ``split_for`` on an engine object of that backend (its chunk limit; nothing loaded)."""
    from api.settings import Settings
    from api.synthesis.service import split_for

    settings = Settings(allow_downloads=False)
    engine: Any
    if backend == "kokoro":
        from api.engines.kokoro import KokoroEngine

        engine = KokoroEngine(settings)
    else:
        from api.engines.zipvoice import ZipVoiceEngine

        engine = ZipVoiceEngine(settings, backend)
    return split_for(engine, text, streaming=True)[0]


def _zipvoice_env(cfg: argparse.Namespace, variants: list[str]) -> dict[str, str]:
    """Server settings for the ZipVoice rows: the ONNX int8 engine on the exported checkpoints."""
    from .engine import prepare_onnx

    model_root, vocos = ensure_assets(cfg.cache_dir, cfg.streaming_size, tuple(variants))
    onnx_dir = model_root
    for v in variants:
        onnx_dir = prepare_onnx(model_root, v, cfg)[0].parent
    return {
        "ENGINE": "onnx",
        "ONNX_PRECISION": "int8",
        "DEVICE": "cpu",
        "ZIPVOICE_MODEL_DIR": str(onnx_dir),
        "VOCOS_MODEL_DIR": str(vocos),
    }


def _register_voice(cl: Any) -> None:
    clip = base64.b64encode(prompt_wav().read_bytes()).decode()
    r = cl.post(
        "/v1/audio/voices", json={"name": VOICE, "audio": f"base64+{clip}", "transcript": PROMPT_TEXT}
    )
    if r.status_code != 201:
        raise RuntimeError(f"voice registration: HTTP {r.status_code}: {r.text[:200]}")


def _row(cfg: argparse.Namespace, cl: Any, backend: str, text: str) -> dict[str, Any]:
    """One backend: warm-up, then interleaved pairs (long streamed request, first chunk alone)."""
    lead = first_chunk(backend, text)
    body: dict[str, Any] = {"model": backend, "input": text, "response_format": "pcm"}
    steps = ZV_STEPS.get(backend)
    if steps is None:
        body["voice"] = KOKORO_VOICE
    else:
        body.update(voice=VOICE, seed=1, num_steps=steps)
    alone_body = {**body, "input": lead}
    for _ in range(cfg.warmup):  # loads the model, prepares (and caches) the prompt: not counted
        speech(cl, alone_body)
    ttfa, total, alone, ratios = [], [], [], []
    audio_s = 0.0
    budget = cfg.streaming_budget
    t_start = time.perf_counter()
    for (t, f, data), (a, _, _) in interleaved(
        lambda: speech(cl, body), lambda: speech(cl, alone_body), cfg.repeats
    ):
        total.append(t)
        ttfa.append(f or t)
        alone.append(a)
        ratios.append((f or t) / a)
        audio_s = pcm_seconds(data)
        spent = time.perf_counter() - t_start
        if spent + spent / len(total) > budget and len(total) < cfg.repeats:
            log(
                f"streaming: {backend}: stopping after {len(total)} pairs (--streaming-budget {budget:.0f} s)"
            )
            break
    ttfa_s, alone_s = summary(ttfa), summary(alone)
    log(f"streaming: {backend}: ttfa {fmt(ttfa_s, 3)} alone {fmt(alone_s, 3)}")
    models = {m["id"]: m for m in cl.get("/v1/models").json().get("data", [])}
    return {
        "backend": backend,
        "steps": steps,
        "runtime": models.get(backend, {}).get("runtime"),
        "text_chars": len(text),
        "first_chunk": lead,
        "first_chunk_chars": len(lead),
        "audio_s": audio_s,
        "ttfa_s": ttfa_s,
        "total_s": summary(total),
        "first_alone_s": alone_s,
        "ttfa_ratio": ttfa_s["median"] / alone_s["median"],
        "pair_ratio": summary(ratios),
        "repeats": len(total),
    }


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    import httpx

    text = text_of(cfg.streaming_chars)
    zv = [b for b in cfg.streaming_backends if b in ZV_STEPS]
    env: dict[str, str] = {"PRELOAD_MODELS": '["kokoro"]' if "kokoro" in cfg.streaming_backends else "[]"}
    if zv:
        env.update(_zipvoice_env(cfg, zv))
    rows: list[dict[str, Any]] = []
    with server(cfg, env) as srv, httpx.Client(base_url=srv.base_url, timeout=cfg.streaming_timeout) as cl:
        if zv:
            _register_voice(cl)
        for backend in cfg.streaming_backends:
            log(f"streaming: {backend}")
            try:
                rows.append(_row(cfg, cl, backend, text))
            except Exception as exc:
                rows.append(
                    {"backend": backend, "steps": ZV_STEPS.get(backend), "status": f"error: {exc}"[:300]}
                )
                log(f"streaming: {backend}: {exc}")
    return {
        "rows": rows,
        "repeats": cfg.repeats,
        "warmup": cfg.warmup,
        "zipvoice_size": cfg.streaming_size,
        "budget_s": cfg.streaming_budget,
    }


def render(res: dict[str, Any]) -> str:
    out = []
    if res.get("zipvoice_size") == "tiny":
        out += [
            "ZipVoice on the tiny test checkpoints (`--quick`): the figures show the path, not the speed.",
            "",
        ]
    out += [
        "| backend | steps | runtime | text chars | first chunk chars | audio s | time to first audio s "
        "| total s | first chunk alone s | TTFA / first chunk alone | per-pair ratio median (min–max) "
        "| pairs |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        if "ttfa_s" not in r:
            out.append(
                f"| {r['backend']} | {r.get('steps') or '–'} | {r.get('status', 'not run')} " + "| " * 9
            )
            continue
        first = r.get("first_chunk_chars", r.get("first_sentence_chars"))  # older runs: the first sentence
        out.append(
            f"| {r['backend']} | {r.get('steps') or '–'} | {r.get('runtime') or '–'} | {r['text_chars']} "
            f"| {first} | {r['audio_s']:.1f} | {fmt(r['ttfa_s'], 3)} | {fmt(r['total_s'], 2)} "
            f"| {fmt(r['first_alone_s'], 3)} | {r['ttfa_ratio']:.2f} | {fmt(r.get('pair_ratio'), 2)} "
            f"| {r.get('repeats', res.get('repeats', '–'))} |"
        )
    firsts = {r["backend"]: r["first_chunk"] for r in res["rows"] if r.get("first_chunk")}
    if firsts:
        out += [
            "",
            "First chunk (the server's streamed plan): "
            + "; ".join(f"{b}: “{t}”" for b, t in firsts.items()),
        ]
    return "\n".join(out)


def goals(res: dict[str, Any], note_of: NoteOf) -> list[dict[str, Any]]:
    rows = {r["backend"]: r for r in res.get("rows", [])}
    g = []
    for backend in [*rows, *(b for b in ("zipvoice_distill",) if b not in rows)]:
        r = rows.get(backend, {})
        steps = f", {r['steps']} steps" if r.get("steps") else ""
        goal = f"streaming ({backend}{steps}) first audio ≤ {GOAL_TTFA_RATIO}× first chunk alone"
        if "ttfa_ratio" not in r:
            g.append(
                {"goal": goal, "measured": "not run", "met": None, "reason": r.get("status", "not measured")}
            )
            continue
        ratio = r["ttfa_ratio"]
        ttfa, alone = r["ttfa_s"]["median"], r["first_alone_s"]["median"]
        met = ratio <= GOAL_TTFA_RATIO
        reason = ""
        if not met:
            reason = (
                f"first audio {ttfa - alone:.2f} s later than the chunk alone (per-pair ratios "
                f"{fmt(r.get('pair_ratio'), 2)}); {note_of(r).split(';')[0]}"
            )
        g.append(
            {
                "goal": goal,
                "measured": f"{ratio:.2f}× ({num(ttfa)} s vs {num(alone)} s)",
                "met": met,
                "reason": reason,
            }
        )
    return g


def add_args(ap: Any) -> None:
    ap.add_argument(
        "--streaming-chars", type=int, default=900, help="streaming text length (~1 min of audio)"
    )
    ap.add_argument(
        "--streaming-backends",
        default="kokoro,zipvoice_distill,zipvoice",
        help="rows, in order: kokoro, zipvoice_distill (8 steps), zipvoice (16 steps); ZipVoice on ONNX int8",
    )
    ap.add_argument(
        "--streaming-size",
        choices=["base", "tiny"],
        default="base",
        help="ZipVoice checkpoints (random weights)",
    )
    ap.add_argument(
        "--streaming-budget",
        type=float,
        default=1200.0,
        help="seconds per row: no further pair starts when the next would not fit (at least one pair)",
    )
    ap.add_argument("--streaming-timeout", type=float, default=1800.0, help="HTTP timeout per request (s)")


def configure(cfg: argparse.Namespace) -> None:
    cfg.streaming_backends = [b.strip() for b in str(cfg.streaming_backends).split(",") if b.strip()]
    if cfg.quick:
        cfg.streaming_chars = 300
        cfg.streaming_size = "tiny"
        cfg.streaming_backends = [b for b in cfg.streaming_backends if b != "zipvoice"]  # tiny: distill only


SECTION = section(
    name="streaming",
    order=30,
    title="Streaming: time to first audio",
    note="A one-minute text streamed as raw PCM; time to first audio = first non-empty body chunk. "
    "'First chunk alone' = a whole request for just the first chunk of the server's streamed plan "
    "(`split_for`: a short first sentence, or the first clause of a long one). Interleaved pairs (long "
    "then alone, alone then long, ...); warm-up not counted. ZipVoice: ONNX Runtime int8 on full-size "
    "random-weight checkpoints and Vocos, seed 1, the variant's default steps; the voice is registered once "
    "from the fixture prompt (2.78 s) with its transcript, and its prompt is prepared by the warm-up and "
    "then served from the server's prompt cache, so neither side pays for it.",
    run=run,
    render=render,
    add_args=add_args,
    configure=configure,
    goals=goals,
)

if __name__ == "__main__":
    raise SystemExit(main_for(SECTION.name))
