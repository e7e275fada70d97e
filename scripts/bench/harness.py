"""What every benchmark section shares: the section registry, texts, interleaving, stats, machine
info, the real server, goals and the report (``docs/benchmarks.md`` / ``.json``).

A section is one module of this package that calls :func:`section` at import time::

    SECTION = section(
        name="captions", order=70, title="Captions: ...", note="how it is measured",
        run=run,            # (cfg) -> {"rows": [...], ...}   (the JSON of the section)
        render=render,      # (result) -> markdown table
        add_args=add_args,  # optional: (argparse group) -> None, the section's own flags
        configure=...,      # optional: (cfg) -> None, parse/--quick adjustments of those flags
        goals=goals,        # optional: (result, note_of) -> [goal rows]
    )
    if __name__ == "__main__":
        raise SystemExit(main_for(SECTION.name))

:func:`sections` finds the modules by listing the package, so nothing else needs editing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import pkgutil
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import REPO_ROOT

SAMPLE_RATE = 24000
NOT_SECTIONS = {"harness", "cli"}  # modules of this package that are not sections

PASSAGE = (
    "The old lighthouse stood at the edge of the cliff, its white paint peeling in the salty wind. "
    "Every evening the keeper climbed the narrow stairs to light the lamp, counting each step as he went. "
    "Ships passing in the night relied on its steady beam to guide them safely past the rocks below. "
    "In the village, children told stories about the keeper and the strange sounds that came from the tower. "
    "Some said he spoke to the seagulls, others claimed he was writing a book about the sea. "
    "The truth was simpler: he loved the quiet, and the sound of the waves was all the company he needed. "
    "One winter a storm rolled in from the north, bringing snow and ice and waves taller than houses. "
    "The power failed across the whole coast, but the lighthouse kept shining through the darkest hours. "
    "By morning the storm had passed, and a fishing boat limped into the harbor with its crew unharmed. "
    "The captain walked up the hill to thank the keeper, carrying a basket of bread and fresh fish. "
    "They sat together by the window, watching the gray sea calm itself under a pale winter sun. "
    "Neither of them said much, but both understood that the light had mattered more than words. "
    "Years later, when the lighthouse was automated, the keeper moved to a small cottage nearby. "
    "He still walked to the cliff every evening, just to watch the beam sweep across the water. "
    "Visitors sometimes asked him whether he missed the work, and he always smiled and shook his head. "
    "The light was still there, he told them, and that was what counted in the end. "
)

# Characters per second of output (measured: ZipVoice with the 2.78 s fixture prompt ≈ 16.7 chars/s,
# Kokoro ≈ 15 chars/s); the tables report the real output duration.
ZV_SHORT, ZV_LONG = 84, 500
KOKORO_SHORT, KOKORO_LONG = 80, 460


def text_of(chars: int) -> str:
    """Whole sentences of the passage, about ``chars`` characters."""
    sentences = [s.strip() + "." for s in PASSAGE.split(". ") if s.strip()]
    sentences = [s[:-1] if s.endswith("..") else s for s in sentences]
    out: list[str] = []
    i = 0
    while sum(len(s) + 1 for s in out) < chars:
        out.append(sentences[i % len(sentences)])
        i += 1
    return " ".join(out)


# --------------------------------------------------------------------------------------------------
# section registry
# --------------------------------------------------------------------------------------------------
Result = dict[str, Any]
NoteOf = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class Section:
    name: str
    order: int  # position in the report and in a full run
    title: str
    note: str  # how the figures are measured (printed under the title)
    run: Callable[[argparse.Namespace], Result]
    render: Callable[[Result], str]
    add_args: Callable[[Any], None] | None = None
    configure: Callable[[argparse.Namespace], None] | None = None
    goals: Callable[[Result, NoteOf], list[dict[str, Any]]] | None = None


_REGISTRY: dict[str, Section] = {}


def section(**kwargs: Any) -> Section:
    """Register a section (called by each section module at import time)."""
    sec = Section(**kwargs)
    _REGISTRY[sec.name] = sec
    return sec


def sections() -> dict[str, Section]:
    """Every section of the package, in report order (imports the section modules once)."""
    package = __name__.rsplit(".", 1)[0]
    for mod in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if mod.name not in NOT_SECTIONS and not mod.name.startswith("_"):
            importlib.import_module(f"{package}.{mod.name}")
    return dict(sorted(_REGISTRY.items(), key=lambda kv: kv[1].order))


def main_for(name: str, argv: list[str] | None = None) -> int:
    """``python -m scripts.bench.<name> [flags]``: the harness with only that section."""
    from .cli import main

    args = sys.argv[1:] if argv is None else argv
    return main(["--sections", name, *args])


# --------------------------------------------------------------------------------------------------
# machine, logging, memory
# --------------------------------------------------------------------------------------------------
def _cpu_and_memory() -> tuple[str, float | None]:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    return cpu, mem_gb


def _versions() -> dict[str, str | None]:
    from importlib.metadata import version

    versions: dict[str, str | None] = {}
    for mod in ("torch", "onnxruntime", "kokoro_onnx", "faster_whisper", "ctranslate2", "fastapi", "uvicorn"):
        try:
            versions[mod] = version(mod.replace("_", "-"))
        except Exception:
            versions[mod] = None
    return versions


def machine() -> dict[str, Any]:
    cpu, mem_gb = _cpu_and_memory()
    commit = None
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1) if mem_gb else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": _versions(),
        "git_commit": commit,
        "gpu": "none (CPU only)",
    }


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rss_now_mb() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return None


def num(x: Any, digits: int = 2) -> str:
    """A number for a table cell, ``–`` when absent."""
    return "–" if x is None else f"{x:.{digits}f}"


# --------------------------------------------------------------------------------------------------
# interleaving
# --------------------------------------------------------------------------------------------------
def interleaved(a: Callable[[], Any], b: Callable[[], Any], pairs: int) -> Iterator[tuple[Any, Any]]:
    """``pairs`` runs of ``a`` and ``b``, the order alternating (A/B, B/A, ...) so that drift in the
    machine's load hits both sides alike; yields ``(a(), b())`` per pair."""
    for i in range(pairs):
        if i % 2 == 0:
            ra = a()
            rb = b()
        else:
            rb = b()
            ra = a()
        yield ra, rb


# --------------------------------------------------------------------------------------------------
# the real server
# --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def server(cfg: argparse.Namespace, env: dict[str, str]) -> Any:
    from tests.e2e.server import ServerProcess

    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        base = {
            "NUM_THREADS": str(cfg.threads),
            "MAX_QUEUE": "32",
            "CACHE_DIR": str(cfg.cache_dir / "server"),
            "LOG_LEVEL": "warning",
        }
        proc = ServerProcess({**base, **env}, Path(tmp))
        try:
            proc.wait_ready(timeout=180)
            yield proc
        finally:
            proc.stop()


def pcm_seconds(data: bytes) -> float:
    return len(data) / 2 / SAMPLE_RATE


def speech(client: Any, body: dict[str, Any]) -> tuple[float, float | None, bytes]:
    """POST /v1/audio/speech, reading the body as it streams: (total s, first-audio s, bytes)."""
    t0 = time.perf_counter()
    first = None
    buf = io.BytesIO()
    with client.stream("POST", "/v1/audio/speech", json=body) as r:
        if r.status_code != 200:
            r.read()
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
        for part in r.iter_bytes():
            if part and first is None:
                first = time.perf_counter() - t0
            buf.write(part)
    return time.perf_counter() - t0, first, buf.getvalue()


# --------------------------------------------------------------------------------------------------
# goals
# --------------------------------------------------------------------------------------------------
def goals(
    results: dict[str, Any], load_start: list[float], runs: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The goals table: each section's goal rows, in section order."""
    load_by_date = {r.get("date"): r.get("loadavg_start") for r in runs or []}

    def load_note_of(row: dict[str, Any]) -> str:
        la = load_by_date.get(row.get("run_date")) or load_start
        return (
            f"measured at load average {la[0] if la else '?'} on {os.cpu_count()} shared cores "
            "(other engineers' tests ran at the same time); the load behind the reference figure is not "
            "known and the upstream code is not installed here for a side-by-side run"
        )

    rows: list[dict[str, Any]] = []
    for name, sec in sections().items():
        if sec.goals is not None:
            rows += sec.goals(results.get(name, {}), load_note_of)
    return rows


def md_goals(rows: list[dict[str, Any]]) -> str:
    out = ["| goal | measured | met? | reason if missed |", "|---|---|---|---|"]
    for r in rows:
        met = "n/a" if r["met"] is None else ("yes" if r["met"] else "**no**")
        out.append(f"| {r['goal']} | {r['measured']} | {met} | {r['reason']} |")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------
def _md_header(cfg: argparse.Namespace, meta: dict[str, Any]) -> list[str]:
    st = meta.get("settings") or {}
    mach = meta["machine"]
    md: list[str] = [
        "# Benchmarks",
        "",
        "Generated by `scripts/bench.py`; do not edit by hand (rerun the harness).",
        "",
        f"- **Date**: {meta['date']}",
        f"- **Command**: `{meta['command']}`",
        f"- **Machine**: {mach['cpu']}, {mach['cores']} cores, "
        f"{mach['memory_gb']} GB RAM, {mach['gpu']}; {mach['os']}; "
        f"Python {mach['python']}",
        "- **Versions**: " + ", ".join(f"{k} {v}" for k, v in mach["versions"].items() if v),
        f"- **Git commit**: {mach['git_commit']}",
        f"- **Load average at start** (1/5/15 min): {meta['loadavg_start']}; at end: {meta['loadavg_end']} "
        "(the machine is shared: other engineers' tests ran during the measurement)",
        f"- **Threads**: {st.get('threads', cfg.threads)}; **repeats**: {st.get('repeats', cfg.repeats)} "
        f"(server overhead: {st.get('repeats_server', cfg.repeats_server)}); "
        f"warm-up runs excluded everywhere; figures are **median (min–max)**",
        f"- **Duration of the run**: {meta['duration_s']:.0f} s",
        "",
    ]
    if len(meta.get("runs", [])) > 1:
        md[-1:-1] = [
            "- **Runs merged into this report** (`--merge`; each section and engine row keeps its "
            "`run_date` in the JSON):"
        ] + [
            f"  - {r['date']}: `{r['command']}` — sections {', '.join(r['sections'] or [])}; load average "
            f"{r['loadavg_start']} → {r['loadavg_end']}; {r['duration_s']:.0f} s"
            for r in meta["runs"]
        ]
    return md


def write_report(
    cfg: argparse.Namespace, meta: dict[str, Any], results: dict[str, Any], goal_rows: list[dict[str, Any]]
) -> None:
    md = _md_header(cfg, meta)
    if goal_rows:
        md += ["## Goals", "", md_goals(goal_rows), ""]
    for name, sec in sections().items():
        if name not in results:
            continue
        md += [f"## {sec.title}", "", sec.note, ""]
        res = results[name]
        if "error" in res:
            md += [f"Section failed: `{res['error']}`", ""]
        else:
            md += [sec.render(res), ""]
    cfg.md.parent.mkdir(parents=True, exist_ok=True)
    cfg.md.write_text("\n".join(md), encoding="utf-8")
    import json

    cfg.json.write_text(
        json.dumps({"meta": meta, "goals": goal_rows, "sections": results}, indent=2, default=str) + "\n",
        encoding="utf-8",
    )


# --------------------------------------------------------------------------------------------------
# --merge
# --------------------------------------------------------------------------------------------------
def row_key(r: dict[str, Any]) -> tuple[str, str, str, str]:
    return (r["backend"], r["engine"], r["precision"], r["output"])


def _merge_engine(prev: dict[str, Any], res: dict[str, Any]) -> dict[str, Any]:
    fresh = {row_key(r) for r in res["rows"]}
    kept = []
    for r in prev["rows"]:
        if row_key(r) in fresh:
            continue
        r = {**r, "run_date": r.get("run_date") or prev.get("run_date")}
        if r["engine"] == "onnxruntime" and r.get("repeats") is None:
            r["status"] = "not run (not in --onnx-variants)"
        kept.append(r)
    for r in res["rows"]:
        r["run_date"] = res["run_date"]
    return {**prev, **{k: v for k, v in res.items() if k != "rows"}, "rows": kept + res["rows"]}


def merge(
    old: dict[str, Any], new: dict[str, Any], meta: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sections of ``old`` this run did not redo are kept; engine rows are merged by key."""
    merged_sections = dict(old.get("sections", {}))
    for name, res in new.items():
        prev = merged_sections.get(name)
        if name == "engine" and prev and "rows" in prev and "rows" in res:
            res = _merge_engine(prev, res)
        merged_sections[name] = res
    old_meta = old.get("meta", {})
    runs = [*old_meta.get("runs", [_run_of(old_meta)]), _run_of(meta)]
    merged = {**old_meta, "runs": runs, "machine": meta["machine"]}
    return {n: merged_sections[n] for n in sections() if n in merged_sections}, merged


def _run_of(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        k: meta.get(k) for k in ("date", "command", "loadavg_start", "loadavg_end", "duration_s", "sections")
    }
