"""RTF / peak-RSS comparison of the ZipVoice runtimes (PyTorch, ONNX fp32, ONNX int8).

Each measurement runs in its own process (so peak RSS is that engine's alone)::

    python -m api.zipvoice.runtime.bench --model-dir /tmp/zv/zipvoice --steps 16 --threads 2

``model_dir`` needs the checkpoint and the exported ONNX files (``zipvoice-export``). Timed: the
model's ``sample`` (text encoder + all decoder steps) for a 3 s prompt and ~5 s of output, batch
of one; the vocoder is the same PyTorch module in every engine and is not included.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FRAMES_PER_SECOND = 24000 / 256


def run_one(model_dir: Path, engine: str, steps: int, threads: int, repeats: int = 2) -> dict[str, Any]:
    """Load one engine in this process, time ``sample``; returns RTF and peak RSS (MB)."""
    import torch

    torch.set_num_threads(threads)
    from api.zipvoice.model.checkpoint import load_model, read_tokens
    from api.zipvoice.sampling import SamplerOptions

    if engine == "torch":
        model: Any = load_model(model_dir)
        feat = model.feat_dim
    else:
        from api.zipvoice.runtime.onnx_backend import load_onnx_model

        model = load_onnx_model(model_dir, engine.removeprefix("onnx-"), num_threads=threads)
        feat = model.feat_dim
    vocab = len(read_tokens(model_dir / "tokens.txt"))
    gen = torch.Generator().manual_seed(0)
    prompt_frames = round(3 * FRAMES_PER_SECOND)
    prompt_tokens = torch.randint(1, vocab, (1, 40), generator=gen).tolist()
    tokens = torch.randint(1, vocab, (1, 67), generator=gen).tolist()  # 67/40 x 3 s = 5 s
    prompt = torch.randn(1, prompt_frames, feat, generator=gen)
    guidance = 3.0 if "distill" in model_dir.name else 1.0
    options = SamplerOptions(t_shift=0.5, num_step=steps, guidance_scale=guidance)
    times: list[float] = []
    out_frames = 0
    for _ in range(repeats + 1):  # first run warms up
        start = time.perf_counter()
        _pred, lens = model.sample(
            tokens, prompt_tokens, prompt, torch.tensor([prompt_frames]), options, generator=gen,
        )  # fmt: skip
        times.append(time.perf_counter() - start)
        out_frames = int(lens[0])
    seconds = out_frames / FRAMES_PER_SECOND
    best = min(times[1:])
    return {
        "engine": engine,
        "steps": steps,
        "audio_s": round(seconds, 2),
        "sample_s": round(best, 2),
        "rtf": round(best / seconds, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, required=True, action="append")
    parser.add_argument("--steps", type=int, action="append", help="per model dir (default 16, distill 8)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--engines", default="torch,onnx-fp32,onnx-int8")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    engines = args.engines.split(",")
    if args.one:
        print(json.dumps(run_one(args.model_dir[0], engines[0], args.steps[0], args.threads)))
        return
    rows = []
    for i, model_dir in enumerate(args.model_dir):
        steps = args.steps[i] if args.steps else (8 if "distill" in model_dir.name else 16)
        for engine in engines:
            cmd = [sys.executable, "-m", "api.zipvoice.runtime.bench", "--one", "--model-dir", str(model_dir)]
            cmd += ["--steps", str(steps), "--threads", str(args.threads), "--engines", engine]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            row = {"model": model_dir.name, **json.loads(out.strip().splitlines()[-1])}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(
        "\n| model | steps | engine | audio s | sample s | RTF | peak RSS MB |\n|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['model']} | {r['steps']} | {r['engine']} | {r['audio_s']} | {r['sample_s']} | "
            f"{r['rtf']} | {r['peak_rss_mb']} |"
        )


if __name__ == "__main__":
    main()
