"""Smoke test of the benchmark harness (``scripts/bench.py``, the ``scripts/bench/`` package): tiny
settings, shape only, no timings.

Runs the engine section with the fixture's tiny ZipVoice checkpoint and vocoder (1 repeat) in a
subprocess, as a user would (through ``scripts/bench.py`` and as ``python -m scripts.bench.engine``),
and checks the JSON and markdown it writes; plus the pure helpers and the section registry.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from bench_lib.stats import fmt, percentile, summary  # noqa: E402

from tests.scripts.bench_run import bench_env, run_bench  # noqa: E402


def test_stats_helpers() -> None:
    s = summary([3.0, 1.0, 2.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.0, 1.0, 3.0, 3)
    assert summary([])["median"] is None and fmt(summary([])) == "–"
    assert fmt(s) == "2.00 (1.00–3.00)"
    assert percentile([1, 2, 3, 4], 95) == 4


def test_section_registry_and_cli() -> None:
    from bench.cli import parse_args
    from bench.harness import sections

    found = sections()
    expected = [
        "engine",
        "torch_free",
        "peers",
        "server",
        "streaming",
        "voice_reuse",
        "concurrency",
        "batching",
        "transcription",
        "ray_serve",
    ]
    # peers is another section's module (present once it lands)
    on_disk = [n for n in expected if (REPO_ROOT / "scripts" / "bench" / f"{n}.py").is_file()]
    assert list(found) == on_disk and set(on_disk) >= set(expected) - {"peers"}
    assert all(s.title and s.note and callable(s.run) and callable(s.render) for s in found.values())
    quick = parse_args(["--quick"])
    assert quick.sections == list(found)
    assert (quick.outputs, quick.zipvoice_variants, quick.clients) == (["~5 s"], ["zipvoice_distill"], [1, 4])
    assert (quick.streaming_chars, quick.whisper_models, quick.zipvoice_budget) == (300, ["tiny.en"], 240.0)
    assert parse_args(["engine", "server"]).sections == ["engine", "server"]
    assert parse_args(["--sections", "streaming,concurrency"]).sections == ["streaming", "concurrency"]
    with pytest.raises(SystemExit):
        parse_args(["--sections", "nope"])


def test_interleaving_alternates_the_order() -> None:
    from bench.harness import interleaved

    calls: list[str] = []
    pairs = list(interleaved(lambda: calls.append("a") or "A", lambda: calls.append("b") or "B", 4))
    assert pairs == [("A", "B")] * 4
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]


def test_goals_and_report_render(tmp_path: Path) -> None:
    from bench import engine, harness

    results = {
        "engine": {
            "rows": [
                {
                    "backend": "zipvoice_distill",
                    "engine": "torch",
                    "precision": "fp32",
                    "output": "~5 s",
                    "rtf": summary([2.0, 2.5, 3.0]),
                    "peak_rss_mb": 900.0,
                    "status": "ok",
                },
                {
                    "backend": "zipvoice",
                    "engine": "torch",
                    "precision": "fp32",
                    "output": "~5 s",
                    "repeats": 0,
                    "projected_rtf": 20.0,
                    "status": "not run",
                },
            ]
        },
        "voice_reuse": {
            "rows": [
                {
                    "backend": "zipvoice_distill",
                    "size": "tiny",
                    "audio_s": 5.0,
                    "first_s": summary([1.0]),
                    "second_s": summary([0.5]),
                    "saved_s": 0.5,
                    "gain": 0.5,
                    "pair_gain": summary([0.5]),
                }
            ]
        },
    }
    goals = harness.goals(results, [1.0, 1.0, 1.0])
    assert {g["met"] for g in goals} <= {True, False, None}
    assert any(g["met"] is None for g in goals)  # the projected (not measured) row
    table = harness.md_goals(goals)
    assert table.startswith("| goal |") and len(table.splitlines()) == len(goals) + 2
    assert "~5 s" in engine.render(results["engine"])
    cfg = argparse.Namespace(
        threads=2, repeats=3, repeats_server=4, md=tmp_path / "r.md", json=tmp_path / "r.json"
    )
    meta = {
        "date": "d",
        "command": "c",
        "machine": harness.machine(),
        "loadavg_start": [1.0],
        "loadavg_end": [1.0],
        "duration_s": 1.0,
    }
    harness.write_report(cfg, meta, results, goals)
    text = cfg.md.read_text()
    assert "## Goals" in text and "## Engine" in text and "## Voice reuse" in text
    assert text.index("## Engine") < text.index("## Voice reuse")
    assert json.loads(cfg.json.read_text())["sections"] == results


def test_merge_from_a_scratch_run(tmp_path: Path) -> None:
    """A run written to a scratch JSON goes into the report later, as ``--merge`` would have put it."""
    from bench import cli, harness

    base, scratch = json.loads((REPO_ROOT / "docs" / "benchmarks.json").read_text()), {}
    run_meta = {**base["meta"], "date": "2030-01-01T00:00:00+00:00", "command": "scratch run"}
    for key in ("runs",):
        run_meta.pop(key, None)
    section = {**base["sections"]["voice_reuse"], "run_date": run_meta["date"]}
    scratch = {"meta": run_meta, "goals": [], "sections": {"voice_reuse": section}}
    (tmp_path / "report.json").write_text(json.dumps(base))
    (tmp_path / "scratch.json").write_text(json.dumps(scratch))
    argv = ["--json", str(tmp_path / "report.json"), "--md", str(tmp_path / "report.md")]
    assert cli.main([*argv, "--merge-from", str(tmp_path / "scratch.json")]) == 0
    out = json.loads((tmp_path / "report.json").read_text())
    assert out["sections"]["voice_reuse"]["run_date"] == run_meta["date"]
    assert set(out["sections"]) == set(base["sections"])  # the other sections are kept
    assert out["meta"]["runs"][-1]["command"] == "scratch run"
    assert len(out["meta"]["runs"]) == len(base["meta"].get("runs") or [base["meta"]]) + 1
    assert "scratch run" in (tmp_path / "report.md").read_text()
    # a merged report is not a run: refused rather than nesting its runs
    with pytest.raises(SystemExit, match="merged report"):
        cli.main([*argv, "--merge-from", str(tmp_path / "report.json")])
    assert harness.sections()


@pytest.mark.slow
def test_engine_section_tiny(tmp_path: Path, reference_dir: Path) -> None:
    data, md = run_bench(
        [str(REPO_ROOT / "scripts" / "bench.py"), "engine"],
        [
            "--zipvoice-size",
            "tiny",
            "--backends",
            "zipvoice",
            "--zipvoice-variants",
            "zipvoice_distill",
            "--outputs",
            "5",
            "--repeats",
            "1",
        ],
        tmp_path,
        reference_dir,
        timeout=300,
    )
    assert set(data) == {"meta", "goals", "sections"}
    meta = data["meta"]
    for key in ("date", "command", "machine", "loadavg_start", "loadavg_end", "duration_s"):
        assert key in meta
    rows = data["sections"]["engine"]["rows"]
    torch_rows = [r for r in rows if r["engine"] == "torch"]
    assert len(torch_rows) == 1
    row = torch_rows[0]
    assert row["backend"] == "zipvoice_distill" and row["status"].startswith("ok"), row["status"]
    assert row["repeats"] == 1 and row["rtf"]["n"] == 1 and row["peak_rss_mb"] > 0 and row["audio_s"] > 0
    text = md.read_text()
    assert "## Engine" in text and "## Goals" in text and "Load average at start" in text
    # the section's own module re-renders the same report from that JSON (python -m entry point)
    md2 = tmp_path / "b2.md"
    js = md.with_suffix(".json")
    cmd = [sys.executable, "-m", "scripts.bench.engine", "--render", "--json", str(js), "--md", str(md2)]
    env = bench_env(reference_dir)
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert md2.read_text() == text


@pytest.mark.slow
@pytest.mark.timeout(900)  # a tiny ONNX export, a venv, two workers and two servers on a shared machine
def test_torch_free_section_tiny(tmp_path: Path, reference_dir: Path) -> None:
    """Torch-free section, --quick (tiny checkpoints, 2 steps): the ONNX engine in a venv made by
    ``uv sync --frozen --no-dev`` (no torch) and the same engine with torch importable, interleaved.
    Cold start is left out here (CI time): the real server from that venv is started and timed by
    tests/e2e/test_torch_free_venv.py."""
    import shutil

    if shutil.which("uv") is None:
        pytest.skip("uv is needed to make the torch-free venv")
    data, md = run_bench(
        [str(REPO_ROOT / "scripts" / "bench.py"), "torch_free", "--quick"],
        [
            "--torch-free-variants",
            "zipvoice_distill",
            "--torch-free-configs",
            "int8,int8-torch",
            "--repeats",
            "1",
            "--torch-free-no-cold",
        ],
        tmp_path,
        reference_dir,
        timeout=850,
    )
    res = data["sections"]["torch_free"]
    assert res["torch_free_mode"] == "venv"
    free, dev = res["rows"]
    assert (free["config"], dev["config"]) == ("onnx-int8 torch-free", "onnx-int8 torch importable")
    for row in (free, dev):
        assert row["status"] == "ok", row["status"]
        assert row["repeats"] == 1 and row["rtf"]["n"] == 1 and row["audio_s"] > 0
        assert row["runtime"] == "onnx-int8 (cpu)" and row["peak_rss_mb"] > 0
    assert free["torch_loaded"] is False  # the torch-free process really ran without torch
    text = md.read_text()
    assert "## Torch-free" in text and "onnx-int8 torch-free | not installed" in text
