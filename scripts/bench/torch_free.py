"""Torch-free section: ZipVoice on ONNX Runtime without PyTorch vs with it vs the PyTorch engine.

.venv/bin/python -m scripts.bench.torch_free --repeats 3
.venv/bin/python -m scripts.bench.torch_free --quick          # tiny checkpoints (smoke test)

Four configurations per variant, each in its own long-lived process, timed in turn (A B C D, then
D C B A, ...) so that drift in the machine's load hits them alike:

* ``onnx-int8 torch-free`` / ``onnx-fp32 torch-free``: ``ENGINE=onnx`` in a process where
  ``sys.modules['torch'] = None`` is set before the project is imported (``import torch`` raises);
* ``onnx-int8 torch importable``: the same engine in the dev venv's normal process (torch installed);
* ``torch``: ``ENGINE=torch``, the PyTorch engine.

Peak RSS is each process's ``VmHWM``. Cold start spawns the real server (``api.cli``, the same
bootstrap for the torch-free rows) per configuration and times process start → first audio byte of
one streamed ``/v1/audio/speech`` request (voice registration included).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_lib.assets import PROMPT_TEXT, ensure_assets, prompt_wav
from bench_lib.stats import fmt, summary

from . import REPO_ROOT
from .harness import ZV_SHORT, log, main_for, num, section, text_of

#: (label, ENGINE, ONNX_PRECISION, torch-free process)
Config = tuple[str, str, str | None, bool]
CONFIGS: dict[str, Config] = {
    "int8": ("onnx-int8 torch-free", "onnx", "int8", True),
    "fp32": ("onnx-fp32 torch-free", "onnx", "fp32", True),
    "int8-torch": ("onnx-int8 torch importable", "onnx", "int8", False),
    "torch": ("torch", "torch", None, False),
}
STEPS = {"zipvoice_distill": 8, "zipvoice": 16}

#: the start of every subprocess: block torch (``import torch`` raises ImportError) when asked, then
#: run the rest of the command line as the module it names
BOOTSTRAP = (
    "import sys, runpy\n"
    "if sys.argv[1] == 'block-torch':\n"
    "    sys.modules['torch'] = None\n"
    "sys.path[:0] = [{root!r}, {scripts!r}]\n"
    "mod = sys.argv[2]\n"
    "sys.argv = [mod, *sys.argv[3:]]\n"
    "runpy.run_module(mod, run_name='__main__', alter_sys=True)\n"
)


#: how the torch-free processes are made: set by ``run`` (``--torch-free-mode``)
_TORCH_FREE: dict[str, Any] = {"mode": "block", "python": sys.executable}


def _bootstrap_cmd(torch_free: bool, module: str, *args: str) -> list[str]:
    """The command of a subprocess; a torch-free one runs in the torch-free venv (``venv`` mode) or
    in this venv with ``sys.modules['torch'] = None`` (``block`` mode)."""
    code = BOOTSTRAP.format(root=str(REPO_ROOT), scripts=str(REPO_ROOT / "scripts"))
    python = _TORCH_FREE["python"] if torch_free else sys.executable
    block = torch_free and _TORCH_FREE["mode"] == "block"
    return [python, "-c", code, "block-torch" if block else "allow-torch", module, *args]


def torch_free_venv(cache_dir: Path) -> Path:
    """``<cache>/torch-free-venv``: ``uv sync --frozen --no-dev`` (the default install, no torch), made
    once per ``uv.lock`` (uv links the packages from its cache); returns its python."""
    import hashlib
    import shutil

    lock = hashlib.sha256((REPO_ROOT / "uv.lock").read_bytes()).hexdigest()[:16]
    venv = cache_dir / "torch-free-venv"
    python = venv / "bin" / "python"
    stamp = venv / ".bench-lock"
    if stamp.is_file() and stamp.read_text() == lock and python.is_file():
        return python
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["UV_PROJECT_ENVIRONMENT"] = str(venv)
    log(f"torch_free: building the torch-free venv ({venv})")
    proc = subprocess.run(
        [uv, "sync", "--frozen", "--no-dev"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"uv sync --frozen --no-dev failed: {proc.stderr.strip()[-300:]}")
    check = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True)
    if check.returncode == 0:
        raise RuntimeError(f"{venv} can import torch")
    stamp.write_text(lock)
    return python


def _status_kb(pid: int | str, field: str) -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return None


def _torch_loaded() -> bool:
    return sys.modules.get("torch") is not None


# --------------------------------------------------------------------------------------------------
# the worker: one configuration, loaded once, synthesizes on each "run" line of stdin
# --------------------------------------------------------------------------------------------------
def worker_loop(spec: dict[str, Any]) -> None:
    """Protocol on the process's original stdout (one JSON line per message; stdout itself is sent to
    stderr so that library prints cannot corrupt it): ``ready`` after load and warm-up, one result per
    ``run`` line read from stdin, a final report on ``quit``."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def send(msg: dict[str, Any]) -> None:
        out.write(json.dumps(msg) + "\n")
        out.flush()

    import hashlib

    import numpy as np

    from api.audio.decode import decode_audio
    from api.engines.base import ReferenceVoice, SynthesisOptions
    from api.engines.zipvoice import ZipVoiceEngine
    from api.runtime_env import configure_process
    from api.settings import Settings
    from api.synthesis.service import split_for

    kw: dict[str, Any] = {
        "num_threads": int(spec["threads"]),
        "allow_downloads": False,
        "device": "cpu",
        "cache_dir": Path(spec["cache_dir"]),
        "zipvoice_model_dir": Path(spec["model_dir"]),
        "vocos_model_dir": Path(spec["vocos_dir"]),
        "engine": spec["engine"],
    }
    if spec.get("precision"):
        kw["onnx_precision"] = spec["precision"]
    settings = Settings(**kw)
    configure_process(settings)  # as the server does (threads, denormals once torch is imported)
    x, sr = decode_audio(prompt_wav().read_bytes(), max_seconds=60, mono=True)
    x = x.astype(np.float32)
    voice = ReferenceVoice(
        samples=x,
        sample_rate=sr,
        transcript=PROMPT_TEXT,
        digest=hashlib.sha256(x.tobytes()).hexdigest(),
        source="file",
    )
    t0 = time.perf_counter()
    engine = ZipVoiceEngine(settings, spec["variant"])
    engine.load()
    load_s = time.perf_counter() - t0
    chunks = split_for(engine, spec["text"], streaming=False)

    def run(steps: int) -> tuple[float, float]:
        t = time.perf_counter()
        audio = sum(
            c.duration for c in engine.synthesize(chunks, voice, SynthesisOptions(seed=1, num_steps=steps))
        )
        return time.perf_counter() - t, audio

    run(1)  # warm-up (not counted): one-time costs, then a projection of one full run
    w_s, _ = run(1)
    send(
        {
            "ready": True,
            "load_s": load_s,
            "projected_run_s": w_s * int(spec["steps"]),
            "runtime": getattr(engine, "runtime", None),
            "rss_loaded_mb": _status_kb("self", "VmRSS"),
        }
    )
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t, audio_s = run(int(spec["steps"]))
        send({"t": t, "audio_s": audio_s})
    send({"peak_rss_mb": _status_kb("self", "VmHWM"), "torch_loaded": _torch_loaded()})


class _Worker:
    def __init__(self, spec: dict[str, Any], torch_blocked: bool, timeout: float) -> None:
        self.timeout = timeout
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        env["OMP_NUM_THREADS"] = str(spec["threads"])
        cmd = _bootstrap_cmd(torch_blocked, "bench.torch_free", "--loop-worker", json.dumps(spec))
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(self.timeout)
            self.stderr.seek(0)
            tail = self.stderr.read().decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"worker exit {self.proc.returncode}: {tail[-1] if tail else ''}")
        msg: dict[str, Any] = json.loads(line)
        return msg

    def send(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def close(self) -> dict[str, Any]:
        try:
            self.send("quit")
            return self.read()
        finally:
            with contextlib.suppress(Exception):
                self.proc.wait(30)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.stderr.close()


# --------------------------------------------------------------------------------------------------
# cold start: the real server, process start -> first audio byte
# --------------------------------------------------------------------------------------------------
def cold_start(
    cfg: argparse.Namespace,
    variant: str,
    conf: tuple[str, str, str | None, bool],
    model_dir: Path,
    vocos: Path,
) -> dict[str, Any]:
    import httpx

    from tests.e2e.server import free_port

    _label, engine, precision, blocked = conf
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
            "ENGINE": engine,
            "DEVICE": "cpu",
            "NUM_THREADS": str(cfg.threads),
            "OMP_NUM_THREADS": str(cfg.threads),
            "PRELOAD_MODELS": "[]",
            "ALLOW_DOWNLOADS": "false",
            "ZIPVOICE_MODEL_DIR": str(model_dir),
            "VOCOS_MODEL_DIR": str(vocos),
            "CACHE_DIR": str(cfg.cache_dir / "server"),
            "VOICES_DIR": str(Path(tmp) / "voices"),
            "LOG_LEVEL": "warning",
            "PYTHONUNBUFFERED": "1",
        }
        if precision:
            env["ONNX_PRECISION"] = precision
        cmd = _bootstrap_cmd(blocked, "api.cli", "--host", "127.0.0.1", "--port", str(port))
        clip = base64.b64encode(prompt_wav().read_bytes()).decode()
        body = {
            "model": variant,
            "input": text_of(ZV_SHORT),
            "voice": "bench",
            "response_format": "pcm",
            "seed": 1,
            "num_steps": _steps(cfg, variant),
        }
        with (Path(tmp) / "server.log").open("wb") as logf:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=logf, stderr=subprocess.STDOUT)
            try:
                with httpx.Client(base_url=base, timeout=cfg.worker_timeout) as cl:
                    deadline = t0 + cfg.worker_timeout
                    while True:
                        if proc.poll() is not None or time.perf_counter() > deadline:
                            raise RuntimeError("server did not start: " + _tail(Path(tmp) / "server.log"))
                        try:
                            if cl.get("/health", timeout=2).status_code == 200:
                                break
                        except httpx.HTTPError:
                            pass
                        time.sleep(0.05)
                    listening = time.perf_counter() - t0
                    reg = cl.post(
                        "/v1/audio/voices",
                        json={"name": "bench", "audio": f"base64+{clip}", "transcript": PROMPT_TEXT},
                    )
                    if reg.status_code != 201:
                        raise RuntimeError(f"voice registration: HTTP {reg.status_code}: {reg.text[:200]}")
                    first = None
                    n = 0
                    with cl.stream("POST", "/v1/audio/speech", json=body) as r:
                        if r.status_code != 200:
                            r.read()
                            raise RuntimeError(f"speech: HTTP {r.status_code}: {r.text[:300]}")
                        for part in r.iter_bytes():
                            if part and first is None:
                                first = time.perf_counter() - t0
                            n += len(part)
                    total = time.perf_counter() - t0
                    models = {m["id"]: m for m in cl.get("/v1/models").json()["data"]}
                peak = _status_kb(proc.pid, "VmHWM")
            finally:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return {
        "listening_s": listening,
        "first_audio_s": first,
        "total_s": total,
        "audio_s": n / 2 / 24000,
        "server_peak_rss_mb": peak,
        "runtime": models.get(variant, {}).get("runtime"),
    }


def _steps(cfg: argparse.Namespace, variant: str) -> int:
    return int(cfg.torch_free_steps) if cfg.torch_free_size == "tiny" else STEPS[variant]


def _tail(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------------------------------
# the section
# --------------------------------------------------------------------------------------------------
def _variant_rows(
    cfg: argparse.Namespace, variant: str, dirs: dict[str, Path], text: str
) -> list[dict[str, Any]]:
    steps = _steps(cfg, variant)
    rows: list[dict[str, Any]] = []
    workers: list[_Worker | None] = []
    confs = [CONFIGS[c] for c in cfg.torch_free_configs]
    for label, engine, precision, blocked in confs:
        row: dict[str, Any] = {
            "backend": variant,
            "config": label,
            "engine": engine,
            "precision": precision or "fp32",
            "torch_blocked": blocked,
            "steps": steps,
            "threads": cfg.threads,
            "size": cfg.torch_free_size,
            "text_chars": len(text),
            "samples": [],
        }
        spec = {
            "variant": variant,
            "engine": engine,
            "precision": precision,
            "steps": steps,
            "threads": cfg.threads,
            "text": text,
            "cache_dir": str(cfg.cache_dir),
            "model_dir": str(dirs["onnx" if engine == "onnx" else "torch"]),
            "vocos_dir": str(dirs["vocos"]),
        }
        log(f"torch_free: {variant} {label}: loading")
        w = _Worker(spec, blocked, cfg.worker_timeout)
        try:
            row.update({k: v for k, v in w.read().items() if k != "ready"})
            workers.append(w)
        except Exception as exc:
            row["status"] = f"error: {exc}"
            w.proc.kill()
            workers.append(None)
        rows.append(row)
    # interleaved rounds: A B C D, D C B A, ...; a round starts only if its projection fits the budget
    budget = cfg.torch_free_budget
    t_start = time.perf_counter()
    done = 0
    for i in range(cfg.repeats):
        round_s = sum(r.get("projected_run_s", 0.0) for r in rows if "status" not in r)
        if done > 0 and time.perf_counter() - t_start + round_s > budget:
            log(f"torch_free: {variant}: stopping after {done} rounds (budget)")
            break
        order = list(range(len(rows))) if i % 2 == 0 else list(reversed(range(len(rows))))
        for j in order:
            wk = workers[j]
            if wk is None:
                continue
            try:
                wk.send("run")
                res = wk.read()
                rows[j]["samples"].append(res["t"])
                rows[j]["audio_s"] = res["audio_s"]
            except Exception as exc:
                rows[j]["status"] = f"error: {exc}"
                wk.proc.kill()
                workers[j] = None
        done += 1
        log(f"torch_free: {variant}: round {done} done")
    for j, wj in enumerate(workers):
        row = rows[j]
        if wj is not None:
            try:
                row.update(wj.close())
            except Exception as exc:
                row["status"] = f"error: {exc}"
        if row.get("audio_s"):
            row["times"] = summary(row["samples"])
            row["rtf"] = summary([t / row["audio_s"] for t in row["samples"]])
        row["repeats"] = len(row["samples"])
        row.setdefault(
            "status",
            "ok"
            if row["repeats"] == cfg.repeats
            else f"ok, {row['repeats']} of {cfg.repeats} rounds (budget)",
        )
    if not cfg.torch_free_no_cold:
        for row, conf in zip(rows, confs, strict=True):
            log(f"torch_free: {variant} {conf[0]}: cold start")
            try:
                row["cold"] = cold_start(
                    cfg, variant, conf, dirs["onnx" if conf[1] == "onnx" else "torch"], dirs["vocos"]
                )
            except Exception as exc:
                row["cold"] = {"error": str(exc)[:300]}
            log(f"  -> {row['cold']}")
    return rows


def _assets(
    cfg: argparse.Namespace, variants: list[str]
) -> tuple[dict[str, dict[str, Path]], dict[str, float]]:
    from .engine import prepare_onnx

    model_root, vocos = ensure_assets(cfg.cache_dir, cfg.torch_free_size, tuple(variants))
    out: dict[str, dict[str, Path]] = {}
    export_s: dict[str, float] = {}
    for v in variants:
        onnx_dir, export_s[v] = prepare_onnx(model_root, v, cfg)
        out[v] = {"torch": model_root, "onnx": onnx_dir.parent, "vocos": vocos}
    return out, export_s


HOW = {
    "venv": "a venv made by `uv sync --frozen --no-dev` (the default install: torch not installed)",
    "block": "this venv with `sys.modules['torch'] = None` set before the project is imported",
}


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    dirs, export_s = _assets(cfg, cfg.torch_free_variants)
    _TORCH_FREE["mode"] = cfg.torch_free_mode
    _TORCH_FREE["python"] = (
        torch_free_venv(cfg.cache_dir) if cfg.torch_free_mode == "venv" else sys.executable
    )
    text = text_of(ZV_SHORT)
    rows: list[dict[str, Any]] = []
    for v in cfg.torch_free_variants:
        rows += _variant_rows(cfg, v, dirs[v], text)
    return {
        "rows": rows,
        "how_torch_free": HOW[cfg.torch_free_mode],
        "torch_free_mode": cfg.torch_free_mode,
        "onnx_export_s": export_s,
        "budget_s": cfg.torch_free_budget,
    }


def render(res: dict[str, Any]) -> str:
    head = f"Torch-free processes: {res.get('how_torch_free', '?')}."
    mach = res.get("machine") or {}
    if mach:
        head += f" Measured on {mach.get('cpu')}, {mach.get('cores')} cores"
        head += f"; load average {res.get('loadavg_start')} → {res.get('loadavg_after')} (shared machine)."
    out = [
        head,
        "",
        "| model | steps | configuration | torch in process | runtime | audio s | rounds | RTF median (min–max) "
        "| peak RSS MB (VmHWM) | load s | cold start → first audio byte s | server listening s "
        "| server peak RSS MB | status |",
        "|---|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["rows"]:
        cold = r.get("cold") or {}
        torch_in = "imported" if r.get("torch_loaded") else "not imported"
        if r.get("torch_blocked"):
            torch_in = "not installed" if res.get("torch_free_mode") == "venv" else "blocked"
        first = num(cold.get("first_audio_s")) if cold else "not run"
        if "error" in cold:
            first = f"error: {cold['error'][:80]}"
        out.append(
            f"| {r['backend']} | {r['steps']} | {r['config']} | {torch_in} | {r.get('runtime') or '–'} "
            f"| {num(r.get('audio_s'))} | {r.get('repeats', '–')} | {fmt(r.get('rtf'))} "
            f"| {num(r.get('peak_rss_mb'), 0)} | {num(r.get('load_s'))} | {first} "
            f"| {num(cold.get('listening_s'))} | {num(cold.get('server_peak_rss_mb'), 0)} | {r.get('status', '–')} |"
        )
    return "\n".join(out)


def add_args(ap: Any) -> None:
    ap.add_argument("--torch-free-variants", default="zipvoice_distill,zipvoice")
    ap.add_argument(
        "--torch-free-configs",
        default=",".join(CONFIGS),
        help="configurations, in interleaving order: int8, fp32 (torch-free ONNX), int8-torch (ONNX, torch "
        "importable), torch (the PyTorch engine)",
    )
    ap.add_argument("--torch-free-size", choices=["base", "tiny"], default="base")
    ap.add_argument(
        "--torch-free-steps", type=int, default=2, help="sampler steps with --quick (tiny checkpoints)"
    )
    ap.add_argument(
        "--torch-free-budget",
        type=float,
        default=1500.0,
        help="seconds per variant for the interleaved rounds",
    )
    ap.add_argument("--torch-free-no-cold", action="store_true", help="skip the cold-start servers")
    ap.add_argument(
        "--torch-free-mode",
        choices=["venv", "block"],
        default="venv",
        help="torch-free processes: a `uv sync --frozen --no-dev` venv (default) or sys.modules['torch'] = None",
    )
    ap.add_argument("--loop-worker", help=argparse.SUPPRESS)


def configure(cfg: argparse.Namespace) -> None:
    if cfg.quick:
        cfg.torch_free_size = "tiny"
    cfg.torch_free_variants = [v.strip() for v in cfg.torch_free_variants.split(",") if v.strip() in STEPS]
    cfg.torch_free_configs = [c.strip() for c in cfg.torch_free_configs.split(",") if c.strip() in CONFIGS]
    if not hasattr(cfg, "worker_timeout"):
        cfg.worker_timeout = 1500.0


SECTION = section(
    name="torch_free",
    order=15,
    title="Torch-free ONNX vs ONNX with torch vs PyTorch (RTF, peak RSS, cold start)",
    note="~5 s output (the 2.78 s fixture prompt), full-size random-weight checkpoints and Vocos, 2 threads. "
    "'Torch-free' rows run where torch cannot be imported: by default in a venv made by `uv sync --frozen "
    "--no-dev` (the default install; torch not installed), or with `--torch-free-mode block` in the dev venv "
    "with `sys.modules['torch'] = None` set first; the line above the table says which. 'torch importable' "
    "is the same ONNX engine in the dev venv; 'torch' is `ENGINE=torch`. Each configuration is one "
    "long-lived process, loaded and warmed (2 one-step runs) once; rounds are interleaved (A B C D, "
    "D C B A, ...). RTF = synthesis seconds (text encoder, all sampler steps, vocoder) / audio seconds. "
    "Peak RSS = that process's VmHWM at the end. Cold start: a fresh `api.cli` server per configuration "
    "(same interpreter, `PRELOAD_MODELS=[]`), timed from `Popen` to the first byte of one streamed "
    "`/v1/audio/speech` (pcm) response, voice registration included; 'server listening' is when `/health` "
    "first answered.",
    run=run,
    render=render,
    add_args=add_args,
    configure=configure,
)


def _main() -> int:
    if "--loop-worker" in sys.argv:
        worker_loop(json.loads(sys.argv[sys.argv.index("--loop-worker") + 1]))
        return 0
    return main_for(SECTION.name)


if __name__ == "__main__":
    raise SystemExit(_main())
