"""Peers section: our torch-free ONNX int8 engine vs sherpa-onnx (C++) on the same exported files.

.venv/bin/python -m scripts.bench.peers --repeats 2
.venv/bin/python -m scripts.bench.peers --upstream-src ~/src/ZipVoice   # + upstream's rows

Each measurement is a fresh process (so its peak RSS is its own): load, one warm-up run on the same
text with 1 sampler step (not counted), then one timed run; the two sides alternate (ours, sherpa,
ours, sherpa, ...) ``--repeats`` times per configuration (threads × output length), so machine
noise hits both. Same full-size random-weight int8 graphs (``zipvoice-export --sherpa`` output:
``text_encoder_int8.onnx``, ``fm_decoder_int8.onnx``, ``tokens.txt``, ``vocos_24khz.onnx``,
``lexicon.txt``), same prompt clip and transcript, same text, same steps, same threads; the prompt
is recomputed on every request on both sides. Ours runs through :class:`ZipVoiceEngine` (the
server's path; torch is not imported) and sherpa-onnx through ``sherpa_onnx.OfflineTts``.

With ``--upstream-src`` (a k2-fsa/ZipVoice checkout) the loop also runs our PyTorch engine
(``ENGINE=torch``), upstream's PyTorch inference and upstream's ONNX inference on the same files
(order: ours-torch, upstream-torch, ours, upstream-onnx, sherpa), plus zipvoice (16 steps) PyTorch
rows; upstream runs in a scratch venv the harness builds (see ``scripts/bench/upstream.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_lib.assets import PROMPT_TEXT, ensure_assets, prompt_wav
from bench_lib.stats import fmt, summary

from . import upstream
from .harness import REPO_ROOT, ZV_SHORT, NoteOf, log, main_for, num, rss_now_mb, section, text_of

VARIANT = "zipvoice_distill"
STEPS = 8
OUTPUTS = {"~5 s": ZV_SHORT, "~16 s": 270}
GOAL_RSS_RATIO = 1.0  # ours / sherpa-onnx peak RSS
GOAL_SPEED = 1.3  # sherpa RTF / ours RTF


#: where the memory goes (fresh-process probes of 2026-11-29 evening, full-size int8 distill, 1 thread;
#: resident memory does not depend on the machine's load, the timings quoted do)
MEMORY_NOTES = [
    "Where our memory goes (fresh-process probes, full-size int8 distill, 1 thread; VmRSS/VmHWM):",
    "",
    "* Loaded engine 324 MB (sherpa-onnx 315-329): Python + numpy 30, the server's imports 59 "
    "(pydantic-settings 16, PyAV 16, inflect 11 (now imported on the first number spelled out only), "
    "FastAPI 7), onnxruntime 17, text encoder session 21, "
    "decoder session 144 (122 MB file), numpy Vocos 52. It was 433 MB: the freed protobuf parse "
    "buffers and Vocos' load temporaries stayed in the C heap; `malloc_trim` after loading "
    "(`api/zipvoice/runtime/heap.py`) returns them.",
    "* One decoder pass: its intermediates are the peak, +39 MB at 470 frames, +71-78 at 760 (the "
    "~5 s text), +108 at 940, +350 at 1,660. ORT's CPU arena kept them for the session's life, so "
    "the vocoder (+16 at 5 s), the next request's prompt and later passes stacked on top; the "
    "decoder now gives the arena back on each pass's last Euler step (run option "
    "`memory.enable_memory_arena_shrinkage` + `malloc_trim`; every step would cost ~14,000 page "
    "faults a step). ~5 s text, 2-step probe: peak 434 -> 408 MB (sherpa-onnx 416).",
    "* Growth with the text: the decoder ran upstream's 25 s chunks (one 1,811-frame pass for the "
    "16 s text: peak 677 MB with the release, 813 before). `ZIPVOICE_ONNX_CHUNK_SECONDS` (default "
    "10 s of prompt + chunk) cuts it into passes at punctuation, cross-faded as before: 3 passes of "
    "at most 816 frames, peak 417 MB (sherpa-onnx 491-494). A pass is bounded by the setting (a "
    "clause without punctuation stays whole, up to the server's 300-character split).",
    "* Not memory: the English front-end (+28 MB: inflect, espeak-ng data) loads on the first "
    "request; jieba and pypinyin (+143 MB) only when Chinese text appears.",
    "* Speed: ONNX Runtime's CPU `Softplus` kernel (the Zipformer's SwooshL/SwooshR, 82 nodes in the "
    "decoder) evaluates log1p(exp(x)) one element at a time; profiled at 760 frames, 1 thread, it was "
    "51% of a decoder step, more than all int8 matmuls together. Our engine loads the graphs with it "
    "written as Relu(x) - Log(Sigmoid(|x|)), the same function on vectorised kernels "
    "(`api/zipvoice/runtime/graph_opt.py`, once per file into the cache, `ZIPVOICE_ONNX_FAST_ACTIVATIONS`): "
    "a step at 760 frames 1,175-1,280 -> 650-780 ms; fp32 outputs equal to 1e-4, int8 outputs as far "
    "from fp32 as before. sherpa-onnx and upstream load the same files as they are. Tried, no gain: "
    "the attention's relative-position shift as two slices instead of Expand + GatherElements "
    "(bit-identical, 5% slower).",
    "* Tried, no gain: arena off (with a fixed mmap threshold -20 MB but every step ~2x slower), "
    "`kSameAsRequested` or one shared env arena (±2 MB), graph optimisation BASIC/EXTENDED/ALL "
    "(same peak), `session.disable_prepacking` (-20 MB at load only, same resident after the trim).",
    "* Speed cost of the bound: the prompt is part of every pass, so the 16 s text decodes ~2,300 "
    "frames in 3 passes instead of 1,811 in one (per-frame step time 5.2 ms at 540 frames, 6.0 at "
    "1,660, 1 thread): ~15-20% more decoder work at 16 s, none at 5 s (one pass either way). "
    "sherpa-onnx decodes ~5 clause passes of ~540 frames for the same text.",
]


RSS_REASON = (
    "RSS does not depend on the load: the peak is the loaded engine (incl. 59 MB of server imports "
    "sherpa-onnx does not have) plus one decoder pass's intermediates, and our passes (up to "
    "ZIPVOICE_ONNX_CHUNK_SECONDS of prompt + chunk) are longer than sherpa-onnx's clauses "
    "(see the notes under the Peers table)"
)
SPEED_REASON = (
    "same int8 files on both sides, so the ratio is the decoder's kernels (ours: Softplus rewritten, "
    "see the notes under the Peers table), the frames decoded (ours: sentence passes up "
    "to ZIPVOICE_ONNX_CHUNK_SECONDS, prompt in each; sherpa-onnx: clause passes) and the "
    "front-end/vocoder; and a shared machine's noise"
)


# --------------------------------------------------------------------------------------------------
# one measurement in a fresh process
# --------------------------------------------------------------------------------------------------
def _prompt() -> tuple[Any, int]:
    from api.audio.decode import decode_audio

    x, sr = decode_audio(prompt_wav().read_bytes(), max_seconds=60, mono=True)
    return x, sr


def _count_passes(engine: Any) -> list[int]:
    """Records the frames (prompt + generated) of each decoder pass of the torch-free pipeline."""
    passes: list[int] = []
    model = engine._pipeline.model
    sample_chunk = getattr(model, "sample_chunk", None)
    if sample_chunk is None:  # not the torch-free pipeline: nothing to count
        return passes

    def counted(tokens: Any, prompt_tokens: Any, prompt_features: Any, *args: Any, **kwargs: Any) -> Any:
        out = sample_chunk(tokens, prompt_tokens, prompt_features, *args, **kwargs)
        passes.append(len(prompt_features) + len(out))
        return out

    model.sample_chunk = counted
    return passes


def _ours(spec: dict[str, Any]) -> dict[str, Any]:
    from api.settings import Settings

    from .ours import measure_engine

    onnx_dir = Path(spec["onnx_dir"])
    settings = Settings(
        num_threads=int(spec["threads"]),
        allow_downloads=False,
        device="cpu",
        engine="onnx",
        zipvoice_model_dir=onnx_dir.parent,
        vocos_model_dir=Path(spec["vocos_dir"]),
        cache_dir=Path(spec["cache_dir"]),
        **({"onnx_precision": "int8"} if "onnx_precision" in Settings.model_fields else {}),
    )
    passes: dict[str, list[int]] = {}  # the decoder passes of the current run (warm-up not kept)
    out = measure_engine(
        settings,
        VARIANT,
        prompt_wav=prompt_wav(),
        prompt_text=PROMPT_TEXT,
        text=spec["text"],
        steps=int(spec["steps"]),
        digest_prefix="peer",
        on_loaded=lambda engine: passes.setdefault("frames", _count_passes(engine)),
        before_run=lambda: passes["frames"].clear(),
    )
    return {
        **out,
        "decoder_passes": len(passes["frames"]),
        "max_pass_frames": max(passes["frames"], default=0),
        "torch_imported": "torch" in sys.modules,
    }


def _sherpa(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import sherpa_onnx

    d = Path(spec["onnx_dir"])
    config = sherpa_onnx.OfflineTtsConfig(
        model=sherpa_onnx.OfflineTtsModelConfig(
            zipvoice=sherpa_onnx.OfflineTtsZipvoiceModelConfig(
                tokens=str(d / "tokens.txt"),
                encoder=str(d / "text_encoder_int8.onnx"),
                decoder=str(d / "fm_decoder_int8.onnx"),
                vocoder=str(d / "vocos_24khz.onnx"),
                lexicon=str(d / "lexicon.txt"),
            ),
            num_threads=int(spec["threads"]),
            provider="cpu",
        )
    )
    t0 = time.perf_counter()
    tts = sherpa_onnx.OfflineTts(config)
    load_s = time.perf_counter() - t0
    rss_loaded = rss_now_mb()
    x, sr = _prompt()

    def run(steps: int) -> tuple[float, float]:
        gen = sherpa_onnx.GenerationConfig()
        gen.reference_audio = np.asarray(x, dtype=np.float32).reshape(-1).tolist()
        gen.reference_sample_rate = sr
        gen.reference_text = PROMPT_TEXT
        gen.num_steps = steps
        t = time.perf_counter()
        audio = tts.generate(spec["text"], gen)
        return time.perf_counter() - t, len(audio.samples) / audio.sample_rate

    run(1)
    elapsed, audio_s = run(int(spec["steps"]))
    return {"load_s": load_s, "rss_loaded_mb": rss_loaded, "run_s": elapsed, "audio_s": audio_s}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    out = _ours(spec) if spec["side"] == "ours" else _sherpa(spec)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["rtf"] = out["run_s"] / out["audio_s"] if out["audio_s"] else None
    return out


def run_worker(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        out_path = Path(tmp) / "out.json"
        code = (
            "import json, sys; sys.path[:0] = [sys.argv[3], sys.argv[3] + '/scripts'];"
            "from scripts.bench.peers import worker;"
            "open(sys.argv[2], 'w').write(json.dumps(worker(json.loads(sys.argv[1]))))"
        )
        env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}
        cmd = [sys.executable, "-c", code, json.dumps(spec), str(out_path), str(REPO_ROOT)]
        try:
            proc = subprocess.run(
                cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not out_path.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()
            return {"error": f"exit {proc.returncode}: {tail[-1] if tail else ''}"}
        result: dict[str, Any] = json.loads(out_path.read_text())
        return result


# --------------------------------------------------------------------------------------------------
# the section
# --------------------------------------------------------------------------------------------------
def prepare(cfg: argparse.Namespace) -> tuple[Path, Path]:
    """The int8 export of the full-size random checkpoint, completed for sherpa-onnx (once)."""
    from api.zipvoice.onnx_export import export_onnx, onnx_files
    from api.zipvoice.vocos_export import LEXICON, VOCOS_ONNX, export_sherpa_extras

    from .engine import prepare_onnx

    zv_dirs = ensure_assets(cfg.cache_dir, cfg.zipvoice_size, (VARIANT,))
    model_root, vocos_dir = zv_dirs[0], zv_dirs[1]
    onnx_dir = model_root.parent / "onnx-models" / VARIANT
    if onnx_files(onnx_dir, "int8") is None:
        if (model_root / VARIANT / "model.pt").is_file():
            onnx_dir, _ = prepare_onnx(model_root, VARIANT, cfg)
        else:
            export_onnx(model_root / VARIANT, onnx_dir, fp32=False)
    texts = [PROMPT_TEXT, *(text_of(c) for c in OUTPUTS.values())]
    if not (onnx_dir / VOCOS_ONNX).is_file() or not (onnx_dir / LEXICON).is_file() or cfg.peers_reexport:
        log(f"peers: sherpa-onnx files in {onnx_dir}")
        export_sherpa_extras(onnx_dir, vocos_dir, texts=texts)
    return onnx_dir, vocos_dir


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    onnx_dir, vocos_dir = prepare(cfg)
    up = upstream.setup(cfg, onnx_dir, vocos_dir)
    order = upstream.sides(up)
    rows: list[dict[str, Any]] = []
    for threads in cfg.peer_threads:
        for label in cfg.peer_outputs:
            text = text_of(OUTPUTS[label])
            sides: dict[str, list[dict[str, Any]]] = {side: [] for side in order}
            for rep in range(cfg.repeats):
                for side in order if rep % 2 == 0 else order[::-1]:
                    spec = {
                        "side": side,
                        "threads": threads,
                        "text": text,
                        "steps": STEPS,
                        "onnx_dir": str(onnx_dir),
                        "vocos_dir": str(vocos_dir),
                        "cache_dir": str(cfg.cache_dir),
                    }
                    if up is not None and side in upstream.SIDES:
                        res = upstream.measure(up, spec)
                    else:
                        res = run_worker(spec, timeout=cfg.worker_timeout)
                    log(
                        f"peers: {side} {threads}t {label}: rtf {num(res.get('rtf'))} peak {num(res.get('peak_rss_mb'), 0)} MB {res.get('error', '')}"
                    )
                    sides[side].append(res)
            row: dict[str, Any] = {
                "threads": threads,
                "output": label,
                "text_chars": len(text),
                "steps": STEPS,
            }
            for side, results in sides.items():
                ok = [r for r in results if "error" not in r]
                row[side] = {
                    "rtf": summary([r["rtf"] for r in ok if r.get("rtf")]),
                    "peak_rss_mb": summary([r["peak_rss_mb"] for r in ok]),
                    "rss_loaded_mb": summary([r["rss_loaded_mb"] for r in ok if r.get("rss_loaded_mb")]),
                    "audio_s": summary([r["audio_s"] for r in ok]),
                    "errors": [r["error"] for r in results if "error" in r],
                    "samples": results,
                }
            o, s = row["ours"], row["sherpa"]
            if o["rtf"].get("median") and s["rtf"].get("median"):
                row["speed_ratio"] = s["rtf"]["median"] / o["rtf"]["median"]
            if o["peak_rss_mb"].get("median") and s["peak_rss_mb"].get("median"):
                row["rss_ratio"] = o["peak_rss_mb"]["median"] / s["peak_rss_mb"]["median"]
            upstream.add_ratios(row)
            rows.append(row)
    return {
        "rows": rows,
        "upstream": upstream.finish(up, cfg, OUTPUTS),
        "variant": VARIANT,
        "precision": "int8",
        "onnx_dir": str(onnx_dir),
    }


def _pass_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Our decoder passes per row (timed runs): how the text was cut (``ZIPVOICE_ONNX_CHUNK_SECONDS``)."""
    cells = []
    for r in rows:
        ok = [x for x in r["ours"].get("samples", []) if "error" not in x and x.get("decoder_passes")]
        if ok:
            cells.append(
                f"{r['threads']} thread(s) {r['output']}: {ok[0]['decoder_passes']} pass(es), "
                f"longest {max(x['max_pass_frames'] for x in ok)} frames"
            )
    return (
        ["", f"Our decoder passes (prompt + generated frames, 93.75 per s): {'; '.join(cells)}."]
        if cells
        else []
    )


def render(res: dict[str, Any]) -> str:
    lines = [
        f"{res['variant']} int8, {STEPS} steps, full-size random weights; RTF and peak RSS (MB) are medians per fresh process.",
        "",
        "| threads | output | ours RTF | sherpa-onnx RTF | speed ratio | ours peak RSS | sherpa-onnx peak RSS | RSS ours / sherpa | audio s (ours / sherpa) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        o, s = r["ours"], r["sherpa"]
        lines.append(
            f"| {r['threads']} | {r['output']} | {fmt(o['rtf'])} | {fmt(s['rtf'])} | {num(r.get('speed_ratio'))}× "
            f"| {num(o['peak_rss_mb'].get('median'), 0)} | {num(s['peak_rss_mb'].get('median'), 0)} "
            f"| {num(r.get('rss_ratio'))} | {num(o['audio_s'].get('median'), 1)} / {num(s['audio_s'].get('median'), 1)} |"
        )
        for side in ("ours", "sherpa"):
            if r[side]["errors"]:
                lines.append(f"|  | {side} errors: {'; '.join(r[side]['errors'])} | | | | | | | |")
    lines += _pass_lines(res["rows"])
    lines += ["", *upstream.render_lines(res, res["variant"], STEPS), "", *MEMORY_NOTES]
    return "\n".join(lines)


def goals(res: dict[str, Any], note_of: NoteOf) -> list[dict[str, Any]]:
    out = []
    dated = {"run_date": res.get("run_date")}
    for r in res.get("rows", []):
        key = f"{r['threads']} thread(s), {r['output']}"
        rss = r.get("rss_ratio")
        out.append(
            {
                "goal": f"ONNX int8 peak RSS ≤ sherpa-onnx ({key})",
                "target": f"≤ {GOAL_RSS_RATIO:.2f}",
                "measured": num(rss),
                "met": None if rss is None else rss <= GOAL_RSS_RATIO,
                "reason": "" if rss is None or rss <= GOAL_RSS_RATIO else RSS_REASON,
            }
        )
        speed = r.get("speed_ratio")
        out.append(
            {
                "goal": f"ONNX int8 speed vs sherpa-onnx ({key})",
                "target": f"≥ {GOAL_SPEED:.1f}×",
                "measured": f"{num(speed)}×",
                "met": None if speed is None else speed >= GOAL_SPEED,
                "reason": "" if speed is None or speed >= GOAL_SPEED else f"{SPEED_REASON}; {note_of(dated)}",
            }
        )
    return out + upstream.goals(res, res.get("variant", VARIANT))


def add_args(ap: Any) -> None:
    ap.add_argument("--upstream-src", type=Path, help="k2-fsa/ZipVoice checkout for the upstream rows")
    ap.add_argument("--peer-threads", default="1,2", help="thread counts of the peers rows")
    ap.add_argument("--peer-outputs", default=",".join(OUTPUTS), help="output lengths of the peers rows")
    ap.add_argument("--peers-reexport", action="store_true", help="rewrite vocos_24khz.onnx and lexicon.txt")
    upstream.add_args(ap)


def configure(cfg: argparse.Namespace) -> None:
    cfg.peer_threads = [int(t) for t in str(cfg.peer_threads).split(",") if t.strip()]
    cfg.peer_outputs = [o.strip() for o in str(cfg.peer_outputs).split(",") if o.strip()]
    unknown = [o for o in cfg.peer_outputs if o not in OUTPUTS]
    if unknown:
        raise SystemExit(f"--peer-outputs: unknown {unknown}; choose from {list(OUTPUTS)}")


SECTION = section(
    name="peers",
    order=17,
    title="Peers: our ONNX int8 vs sherpa-onnx on the same files",
    note=__doc__.split("\n\n", 2)[2] if __doc__ else "",
    run=run,
    render=render,
    add_args=add_args,
    configure=configure,
    goals=goals,
)

if __name__ == "__main__":
    raise SystemExit(main_for("peers"))
