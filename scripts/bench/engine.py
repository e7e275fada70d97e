"""Engine section: real-time factor and peak RSS, one fresh subprocess per row.

.venv/bin/python -m scripts.bench.engine --quick
"""

from __future__ import annotations

import argparse
import importlib.util
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

from . import REPO_ROOT
from .harness import (
    KOKORO_LONG,
    KOKORO_SHORT,
    ZV_LONG,
    ZV_SHORT,
    NoteOf,
    log,
    main_for,
    num,
    rss_now_mb,
    section,
    text_of,
)

# Reference figures measured with the upstream code on this machine (2 threads), and our goals.
REF_RTF = {"zipvoice": (7.6, 12.5), "zipvoice_distill": (2.0, 2.7)}
REF_RSS_GB = 1.2
GOAL_RSS_GB = 1.5
ENTRY = REPO_ROOT / "scripts" / "bench.py"  # the worker subprocess runs the harness entry point


# --------------------------------------------------------------------------------------------------
# the worker (a fresh process per row)
# --------------------------------------------------------------------------------------------------
def _prompt_voice(scale: float = 1.0) -> Any:
    import hashlib

    import numpy as np

    from api.audio.decode import decode_audio
    from api.engines.base import ReferenceVoice

    x, sr = decode_audio(prompt_wav().read_bytes(), max_seconds=60, mono=True)
    x = (x * scale).astype(np.float32)
    digest = hashlib.sha256(x.tobytes()).hexdigest()
    return ReferenceVoice(samples=x, sample_rate=sr, transcript=PROMPT_TEXT, digest=digest, source="file")


def _worker_settings(spec: dict[str, Any]) -> Any:
    from api.settings import Settings

    kw: dict[str, Any] = {
        "num_threads": int(spec["threads"]),
        "allow_downloads": False,
        "device": "cpu",
        "cache_dir": Path(spec["cache_dir"]),
    }
    if spec.get("zipvoice_model_dir"):
        kw["zipvoice_model_dir"] = Path(spec["zipvoice_model_dir"])
        kw["vocos_model_dir"] = Path(spec["vocos_model_dir"])
    if spec.get("engine_setting"):
        kw["engine"] = spec["engine_setting"]
    if spec.get("onnx_precision") and "onnx_precision" in Settings.model_fields:
        kw["onnx_precision"] = spec["onnx_precision"]
    settings = Settings(**kw)
    if spec.get("onnx_precision") and "onnx_precision" not in Settings.model_fields:
        # no ONNX_PRECISION setting yet: set the attribute the engine reads (getattr(settings, "onnx_precision"))
        object.__setattr__(settings, "onnx_precision", spec["onnx_precision"])
    return settings


def _worker_engine(spec: dict[str, Any], settings: Any) -> tuple[Any, Any, int | None]:
    """``(engine, voice, sampler steps or None)`` for the row's backend."""
    from api.engines.base import PresetVoice

    if spec["backend"] == "kokoro":
        from api.engines.kokoro import KokoroEngine

        return KokoroEngine(settings), PresetVoice(spec.get("voice", "jm_kumo")), None
    import torch

    torch.set_num_threads(int(spec["threads"]))
    from api.engines.zipvoice import ZipVoiceEngine

    engine = ZipVoiceEngine(settings, spec["backend"])
    return engine, _prompt_voice(), engine.defaults.num_steps


def _fit_repeats(spec: dict[str, Any], projected: float, elapsed: float) -> int:
    """The requested repeats, fewer when the time budget left cannot hold them."""
    repeats = int(spec["repeats"])
    budget = spec.get("budget_s")
    if budget is not None:
        budget -= elapsed
        fit = int(budget // projected) if projected > 0 else repeats
        if fit == 0 and projected <= 1.25 * budget:
            fit = 1
        repeats = min(repeats, fit)
    return repeats


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process: load one engine, warm up, time ``repeats`` syntheses, report RSS."""
    from api.engines.base import SynthesisOptions
    from api.synthesis.service import split_for

    t_start = time.perf_counter()
    engine, voice, steps = _worker_engine(spec, _worker_settings(spec))
    rss_base = rss_now_mb()
    t0 = time.perf_counter()
    engine.load()
    load_s = time.perf_counter() - t0
    rss_loaded = rss_now_mb()
    text = spec["text"]
    chunks = split_for(engine, text, streaming=False)  # the server's planner, for a whole file

    def run(options: SynthesisOptions) -> tuple[float, float]:
        t = time.perf_counter()
        audio = sum(c.duration for c in engine.synthesize(chunks, voice, options))
        return time.perf_counter() - t, audio

    out: dict[str, Any] = {"load_s": load_s, "chunks": len(chunks), "text_chars": len(text), "steps": steps}
    # warm-up (not counted). ZipVoice: the same text with 1 sampler step, twice (the first call pays
    # one-time costs); the second gives an upper bound of one full run (steps × its time) to fit the rows
    # into the time budget.
    if steps is not None:
        run(SynthesisOptions(seed=1, num_steps=1))
        w_s, audio_s = run(SynthesisOptions(seed=1, num_steps=1))
        projected = w_s * steps
    else:
        w_s, audio_s = run(SynthesisOptions())  # the warm-up doubles as the projection
        projected = w_s
    out["warmup_s"] = w_s
    out["projected_run_s"] = projected
    repeats = _fit_repeats(spec, projected, time.perf_counter() - t_start)
    times: list[float] = []
    for _ in range(repeats):
        t, audio_s = run(SynthesisOptions(seed=1))
        times.append(t)
    out.update(
        audio_s=audio_s,
        repeats=repeats,
        times=summary(times),
        rtf=summary([t / audio_s for t in times]) if audio_s else summary([]),
        projected_rtf=projected / audio_s if audio_s else None,
        rss_base_mb=rss_base,
        rss_loaded_mb=rss_loaded,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        wall_s=time.perf_counter() - t_start,
        torch_threads=None,
        runtime=getattr(engine, "runtime", None),
    )
    if steps is not None:
        import torch

        out["torch_threads"] = torch.get_num_threads()
    return out


def run_worker(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        out_path = Path(tmp) / "out.json"
        cmd = [sys.executable, str(ENTRY), "--worker", json.dumps(spec), "--worker-out", str(out_path)]
        env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}
        try:
            proc = subprocess.run(
                cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not out_path.is_file():
            tail = (proc.stderr or proc.stdout)[-600:]
            return {
                "error": f"exit {proc.returncode}: {tail.strip().splitlines()[-1] if tail.strip() else ''}"
            }
        result: dict[str, Any] = json.loads(out_path.read_text())
        return result


# --------------------------------------------------------------------------------------------------
# the section: plan, PyTorch/Kokoro rows, ONNX rows
# --------------------------------------------------------------------------------------------------
def _plan(cfg: argparse.Namespace, variants: list[str]) -> list[dict[str, Any]]:
    plan: list[dict[str, Any]] = []
    if "kokoro" in cfg.backends:
        for label, chars in (("~5 s", KOKORO_SHORT), ("~30 s", KOKORO_LONG)):
            if label in cfg.outputs:
                plan.append(
                    {
                        "backend": "kokoro",
                        "engine": "onnxruntime",
                        "precision": "int8 (offline assets)",
                        "output": label,
                        "text": text_of(chars),
                    }
                )
    for label, chars in (("~5 s", ZV_SHORT), ("~30 s", ZV_LONG)):
        if label not in cfg.outputs:
            continue
        for v in variants:
            plan.append(
                {
                    "backend": v,
                    "engine": "torch",
                    "precision": "fp32",
                    "output": label,
                    "text": text_of(chars),
                    "engine_setting": "torch",
                }
            )
    return plan


def _status(res: dict[str, Any], cfg: argparse.Namespace) -> str:
    status = (
        "ok"
        if res["repeats"] > 0
        else (f"not run: projected {res['projected_run_s']:.0f} s per run > budget left")
    )
    if res["repeats"] and res["repeats"] < cfg.repeats:
        status = f"ok, {res['repeats']} of {cfg.repeats} repeats (time budget)"
    return status


def _skipped_long_row(
    cfg: argparse.Namespace, row: dict[str, Any], prev: tuple[float, float] | None, budget_left: float
) -> dict[str, Any] | None:
    """The record of a ~30 s ZipVoice row that cannot fit (from its ~5 s row), else None."""
    if row["output"] == "~5 s" or prev is None:
        return None
    # skip without even the 1-step run when the ~5 s row says it cannot fit
    est = prev[0] * ZV_LONG / ZV_SHORT
    if est <= 1.25 * budget_left:
        return None
    log(f"engine: {row['backend']} {row['output']} skipped (projected {est:.0f} s)")
    return {
        **{k: v for k, v in row.items() if k != "text"},
        "threads": cfg.threads,
        "size": cfg.zipvoice_size,
        "repeats": 0,
        "projected_run_s": est,
        "projected_rtf": prev[0] / prev[1],
        "status": f"not run: projected {est:.0f} s per run (extrapolated from the ~5 s row) "
        f"> budget left {budget_left:.0f} s",
    }


def _record(cfg: argparse.Namespace, row: dict[str, Any], res: dict[str, Any], is_zv: bool) -> dict[str, Any]:
    rec = {k: v for k, v in row.items() if k not in ("text", "engine_setting")}
    rec["text_chars"] = len(row["text"])
    rec["threads"] = cfg.threads
    rec["size"] = cfg.zipvoice_size if is_zv else "full (82M)"
    if "error" in res:
        rec["status"] = f"error: {res['error']}"
    else:
        rec.update(res)
        rec["status"] = _status(res, cfg)
    return rec


def _plain_rows(
    cfg: argparse.Namespace, variants: list[str], zv_dirs: tuple[Path, Path] | None
) -> list[dict[str, Any]]:
    """Kokoro and ZipVoice-on-PyTorch rows; the ZipVoice ones share ``--zipvoice-budget``."""
    rows: list[dict[str, Any]] = []
    budget_left = cfg.zipvoice_budget
    projected_5s: dict[str, tuple[float, float]] = {}  # variant -> (projected run s, audio s) of the ~5 s row
    for row in _plan(cfg, variants):
        spec = {**row, "threads": cfg.threads, "repeats": cfg.repeats, "cache_dir": str(cfg.cache_dir)}
        is_zv = row["backend"] != "kokoro"
        if is_zv:
            if zv_dirs is None:
                rows.append({**row, "status": "skipped: ZipVoice assets unavailable"})
                continue
            spec["zipvoice_model_dir"], spec["vocos_model_dir"] = str(zv_dirs[0]), str(zv_dirs[1])
            # greedy: each row may use what is left of the budget (earlier rows get their repeats)
            spec["budget_s"] = max(0.0, budget_left)
            skipped = _skipped_long_row(cfg, row, projected_5s.get(row["backend"]), budget_left)
            if skipped is not None:
                rows.append(skipped)
                continue
        log(f"engine: {row['backend']} {row['output']} (budget {spec.get('budget_s', '–')})")
        t0 = time.perf_counter()
        res = run_worker(spec, timeout=cfg.worker_timeout)
        if is_zv:
            budget_left -= time.perf_counter() - t0
        rec = _record(cfg, row, res, is_zv)
        if "error" not in res and is_zv and row["output"] == "~5 s" and res.get("audio_s"):
            projected_5s[row["backend"]] = (res["projected_run_s"], res["audio_s"])
        rows.append(rec)
        log(f"  -> {rec['status']} rtf {fmt(rec.get('rtf'))} peak {rec.get('peak_rss_mb')}")
    return rows


def prepare_onnx(model_root: Path, variant: str, cfg: argparse.Namespace) -> tuple[Path, float]:
    """``<cache>/…/onnx-models/<variant>``: the checkpoint (hard links) plus its ONNX export (once)."""
    from api.zipvoice.onnx_export import onnx_files

    d = model_root.parent / "onnx-models" / variant
    d.mkdir(parents=True, exist_ok=True)
    for f in ("model.json", "tokens.txt", "model.pt"):
        if not (d / f).exists():
            try:
                os.link(model_root / variant / f, d / f)
            except OSError:
                import shutil

                shutil.copyfile(model_root / variant / f, d / f)
    if onnx_files(d, "int8") is not None and onnx_files(d, "fp32") is not None:
        return d, 0.0
    log(f"exporting {variant} to ONNX (one-time, not counted in the rows)")
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "export_onnx.py"), str(d)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=1800,
    )
    return d, time.perf_counter() - t0


def _onnx_row(
    cfg: argparse.Namespace, v: str, precision: str, onnx_dir: Path, vocos_dir: Path, budget: float
) -> dict[str, Any]:
    """One timed ONNX Runtime row (its fields beyond the key)."""
    from api.settings import Settings

    text = text_of(ZV_SHORT)
    spec = {
        "backend": v,
        "text": text,
        "threads": cfg.threads,
        "repeats": cfg.repeats,
        "cache_dir": str(cfg.cache_dir),
        "engine_setting": "onnx",
        "onnx_precision": precision,
        "zipvoice_model_dir": str(onnx_dir.parent),
        "vocos_model_dir": str(vocos_dir),
        "budget_s": max(0.0, budget),
    }
    log(f"engine: {v} onnx {precision} (budget {budget:.0f})")
    res = run_worker(spec, timeout=cfg.worker_timeout)
    rec: dict[str, Any] = {"text_chars": len(text)}
    if "error" in res:
        rec["status"] = f"error: {res['error']}"
        return rec
    rec.update(res)
    rec["status"] = _status(res, cfg)
    if res.get("runtime"):
        rec["status"] += f" [{res['runtime']}]"
    if "onnx_precision" not in Settings.model_fields:
        rec["status"] += " (precision set on the engine's settings object: no ONNX_PRECISION setting yet)"
    return rec


def _onnx_rows(
    cfg: argparse.Namespace, zv_dirs: tuple[Path, Path] | None, runtime: bool, export_s: dict[str, float]
) -> list[dict[str, Any]]:
    """ONNX Runtime rows (api.zipvoice.runtime): the checkpoint is exported once (timed separately, in
    its own process) into a directory of its own, so the torch rows never pick the ONNX files."""
    rows: list[dict[str, Any]] = []
    onnx_budget = cfg.onnx_budget
    for v in cfg.onnx_variants:
        onnx_dir = None
        if runtime and zv_dirs is not None:
            try:
                onnx_dir, export_s[v] = prepare_onnx(zv_dirs[0], v, cfg)
            except Exception as exc:
                log(f"ONNX export of {v} failed: {exc}")
        for precision in ("fp32", "int8"):
            rec: dict[str, Any] = {
                "backend": v,
                "engine": "onnxruntime",
                "precision": precision,
                "output": "~5 s",
                "threads": cfg.threads,
                "size": cfg.zipvoice_size,
            }
            if not runtime:
                rec["status"] = "not yet available (api.zipvoice.runtime missing)"
            elif onnx_dir is None or zv_dirs is None:
                rec["status"] = "not run: ONNX export failed or ZipVoice assets unavailable"
            else:
                t0 = time.perf_counter()
                rec.update(_onnx_row(cfg, v, precision, onnx_dir, zv_dirs[1], onnx_budget))
                onnx_budget -= time.perf_counter() - t0
                log(f"  -> {rec['status']} rtf {fmt(rec.get('rtf'))}")
            rows.append(rec)
    return rows


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    zv_dirs: tuple[Path, Path] | None = None
    variants = [v for v in ("zipvoice_distill", "zipvoice") if v in cfg.zipvoice_variants]
    try:
        log(f"ZipVoice assets ({cfg.zipvoice_size}) in {cfg.cache_dir}")
        zv_dirs = ensure_assets(cfg.cache_dir, cfg.zipvoice_size, tuple(variants) or ("zipvoice_distill",))
    except Exception as exc:
        log(f"cannot build ZipVoice assets: {exc}")
    rows = _plain_rows(cfg, variants, zv_dirs)
    runtime = importlib.util.find_spec("api.zipvoice.runtime") is not None
    export_s: dict[str, float] = {}
    if "onnx" in cfg.backends:
        rows += _onnx_rows(cfg, zv_dirs, runtime, export_s)
    return {
        "rows": rows,
        "zipvoice_budget_s": cfg.zipvoice_budget,
        "onnx_runtime_present": runtime,
        "onnx_export_s": export_s,
    }


# --------------------------------------------------------------------------------------------------
# table, goals, flags
# --------------------------------------------------------------------------------------------------
def render(res: dict[str, Any]) -> str:
    out = [
        "| backend | engine | precision | size | output | audio s | threads | repeats | load s | RTF median "
        "(min–max) | wall s / run | peak RSS MB | RSS after load MB | status |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["rows"]:
        rtf = fmt(r.get("rtf"))
        if r.get("repeats") == 0 and r.get("projected_rtf"):
            rtf = f"≈ ≤ {r['projected_rtf']:.1f} (projected)"
        out.append(
            f"| {r['backend']} | {r['engine']} | {r['precision']} | {r.get('size', '–')} | {r['output']} "
            f"| {num(r.get('audio_s'))} | {r.get('threads', '–')} | {r.get('repeats', '–')} | {num(r.get('load_s'))} "
            f"| {rtf} | {fmt(r.get('times'), 1)} | {num(r.get('peak_rss_mb'), 0)} | {num(r.get('rss_loaded_mb'), 0)} "
            f"| {r['status']} |"
        )
    return "\n".join(out)


def _how(r: dict[str, Any]) -> str:
    return "PyTorch" if r["engine"] == "torch" else f"{r['engine']} {r['precision']}"


def _rtf_goal(variant: str, r: dict[str, Any], note_of: NoteOf) -> dict[str, Any]:
    lo, hi = REF_RTF[variant]
    name = f"{variant} ({_how(r)}) {r['output']} RTF no slower than the reference ({lo}–{hi})"
    if r.get("rtf", {}).get("median") is not None:
        met = r["rtf"]["median"] <= hi
        return {
            "goal": name,
            "measured": fmt(r["rtf"]) + ("" if r["rtf"]["n"] > 1 else " (time budget)"),
            "met": met,
            "reason": "" if met else note_of(r),
        }
    proj = r.get("projected_rtf")
    return {
        "goal": name,
        "measured": f"not measured; projected ≤ {proj:.1f}" if proj else "not measured",
        "met": None,
        "reason": f"{r['status']}; {note_of(r)}",
    }


def goals(res: dict[str, Any], note_of: NoteOf) -> list[dict[str, Any]]:
    g: list[dict[str, Any]] = []
    eng = res.get("rows", [])
    for variant in REF_RTF:
        for r in [r for r in eng if r["backend"] == variant and (r["engine"] == "torch" or r.get("repeats"))]:
            g.append(_rtf_goal(variant, r, note_of))
        for r in [r for r in eng if r["backend"] == variant and r.get("peak_rss_mb")]:
            gb = r["peak_rss_mb"] / 1024
            g.append(
                {
                    "goal": f"{variant} ({_how(r)}) {r['output']} peak RSS ≤ {GOAL_RSS_GB} GB "
                    f"(reference ~{REF_RSS_GB} GB)",
                    "measured": f"{gb:.2f} GB",
                    "met": gb <= GOAL_RSS_GB,
                    "reason": "",
                }
            )
    return g


def add_args(ap: Any) -> None:
    ap.add_argument(
        "--zipvoice-size",
        choices=["base", "tiny"],
        default="base",
        help="engine section checkpoints: full-size random (base) or tiny (smoke tests)",
    )
    ap.add_argument("--zipvoice-variants", default="zipvoice,zipvoice_distill")
    ap.add_argument(
        "--backends",
        default="kokoro,zipvoice,onnx",
        help="engine section rows: kokoro, zipvoice (PyTorch), onnx (ZipVoice on ONNX Runtime)",
    )
    ap.add_argument("--onnx-variants", default="zipvoice_distill", help="ZipVoice variants with ONNX rows")
    ap.add_argument("--onnx-budget", type=float, default=300.0, help="seconds shared by the ONNX rows")
    ap.add_argument("--outputs", default="5,30", help="engine section output lengths (seconds): 5 and/or 30")
    ap.add_argument(
        "--zipvoice-budget",
        type=float,
        default=450.0,
        help="seconds shared by the ZipVoice engine rows (projected-too-long rows are skipped)",
    )
    ap.add_argument("--worker-timeout", type=float, default=1500.0)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def configure(cfg: argparse.Namespace) -> None:
    if cfg.quick:
        cfg.outputs = "5"
        cfg.zipvoice_variants = "zipvoice_distill"
        cfg.zipvoice_budget = min(cfg.zipvoice_budget, 240.0)
    cfg.zipvoice_variants = _split(cfg.zipvoice_variants)
    cfg.backends = _split(cfg.backends)
    cfg.onnx_variants = _split(cfg.onnx_variants)
    cfg.outputs = [f"~{o} s" for o in _split(cfg.outputs)]
    if "zipvoice" not in cfg.backends:
        cfg.zipvoice_variants = []


SECTION = section(
    name="engine",
    order=10,
    title="Engine: real-time factor and peak RSS",
    note="RTF = synthesis seconds / output audio seconds (lower is faster). Each row runs in a fresh "
    "subprocess (peak RSS = `ru_maxrss` of that process: imports + weights + synthesis). The 3 s "
    "prompt is the fixture's 2.78 s `prompt.wav`. ZipVoice checkpoints and Vocos are full-size "
    "with random weights (same compute as the real ones). Warm-up not counted: ZipVoice runs "
    "the same text twice with 1 sampler step first (this also projects a full run as ≤ steps × "
    "that time); Kokoro runs it once. 'wall s / run' is one synthesis.",
    run=run,
    render=render,
    add_args=add_args,
    configure=configure,
    goals=goals,
)

if __name__ == "__main__":
    raise SystemExit(main_for(SECTION.name))
