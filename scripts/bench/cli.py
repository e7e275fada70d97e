"""``scripts/bench.py``'s command line: global flags, each section's own flags, the run loop."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import REPO_ROOT
from . import __doc__ as PACKAGE_DOC
from .harness import goals, loadavg, log, machine, merge, sections, write_report


def _parser() -> argparse.ArgumentParser:
    names = ",".join(sections())
    ap = argparse.ArgumentParser(
        prog="scripts/bench.py", description=PACKAGE_DOC, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "only", nargs="*", metavar="SECTION", help=f"sections to run (same as --sections): {names}"
    )
    ap.add_argument("--sections", default=names, help=f"comma-separated subset of {names}")
    ap.add_argument(
        "--quick", action="store_true", help="lighter plan: ~5 s outputs only, distill only, fewer levels"
    )
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per figure (≥ 3 for real numbers)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs (server sections)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep the sections (and engine rows) of the existing JSON that this run does not redo",
    )
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "zipvoice-bench-cache")
    ap.add_argument("--md", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--json", type=Path, default=REPO_ROOT / "docs" / "benchmarks.json")
    ap.add_argument(
        "--render", action="store_true", help="only re-render the markdown (and goals) from the JSON"
    )
    ap.add_argument(
        "--merge-from",
        type=Path,
        help="merge the sections of a run written to another JSON (--json elsewhere) into --json, re-render",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    for name, sec in sections().items():
        if sec.add_args is not None:
            sec.add_args(ap.add_argument_group(f"{name} section"))
    return ap


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = _parser()
    cfg = ap.parse_args(argv)
    chosen = cfg.only or cfg.sections.split(",")
    cfg.sections = [s.strip() for item in chosen for s in item.split(",") if s.strip()]
    del cfg.only
    known = sections()
    unknown = set(cfg.sections) - set(known)
    if unknown:
        ap.error(f"unknown sections: {', '.join(sorted(unknown))}")
    for sec in known.values():
        if sec.configure is not None:
            sec.configure(cfg)
    return cfg


def _meta(cfg: argparse.Namespace, argv: list[str] | None, load_start: list[float]) -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="seconds"),
        "command": " ".join(
            [
                ".venv/bin/python",
                "scripts/bench.py",
                *map(shlex.quote, sys.argv[1:] if argv is None else argv),
            ]
        ),
        "machine": machine(),
        "loadavg_start": load_start,
        "sections": cfg.sections,
        "settings": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(cfg).items()
            if k not in ("worker", "worker_out")
        },
    }


def run_sections(cfg: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen sections in report order; a failing section is recorded, not fatal."""
    results: dict[str, Any] = {}
    for name, sec in sections().items():
        if name not in cfg.sections:
            continue
        t0 = time.perf_counter()
        try:
            results[name] = sec.run(cfg)
        except Exception as exc:
            log(f"section {name} failed: {type(exc).__name__}: {exc}")
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        results[name]["section_s"] = time.perf_counter() - t0
        results[name]["loadavg_after"] = loadavg()
    return results


def merge_from(cfg: argparse.Namespace) -> int:
    """The sections of a finished run written to another JSON go into ``--json`` as if that run had
    used ``--merge`` (its own date, command and load averages are kept in the list of runs)."""
    other = json.loads(cfg.merge_from.read_text())
    meta = other["meta"]
    if meta.get("runs"):
        raise SystemExit(f"{cfg.merge_from} is itself a merged report: merge the runs it lists instead")
    results, merged = merge(json.loads(cfg.json.read_text()), other["sections"], meta)
    write_report(cfg, merged, results, goals(results, merged["runs"][0]["loadavg_start"], merged["runs"]))
    log(f"merged {', '.join(other['sections'])} from {cfg.merge_from} into {cfg.json} and {cfg.md}")
    return 0


def render_only(cfg: argparse.Namespace) -> int:
    data = json.loads(cfg.json.read_text())
    runs = data["meta"].get("runs") or [data["meta"]]
    write_report(cfg, data["meta"], data["sections"], goals(data["sections"], runs[0]["loadavg_start"], runs))
    return 0


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    if cfg.worker:
        from .engine import worker

        out = worker(json.loads(cfg.worker))
        cfg.worker_out.write_text(json.dumps(out), encoding="utf-8")
        return 0
    if cfg.merge_from:
        return merge_from(cfg)
    if cfg.render:
        return render_only(cfg)
    cfg.cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_start = loadavg()
    meta = _meta(cfg, argv, load_start)
    log(f"load average at start: {load_start}; sections: {', '.join(cfg.sections)}")
    results = run_sections(cfg)
    meta["loadavg_end"] = loadavg()
    meta["duration_s"] = time.perf_counter() - started
    for res in results.values():
        res["run_date"] = meta["date"]
    if cfg.merge and cfg.json.is_file():
        results, meta = merge(json.loads(cfg.json.read_text()), results, meta)
    goal_rows = goals(results, meta.get("loadavg_start") or load_start, meta.get("runs"))
    write_report(cfg, meta, results, goal_rows)
    log(f"wrote {cfg.md} and {cfg.json} (this run: {time.perf_counter() - started:.0f} s)")
    return 0
