"""The batching bench section (``scripts/bench/batching.py``): texts, goals and table from made-up
results, and one tiny run end to end (two real servers, tiny checkpoints, 1 and 2 clients)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from bench import batching  # noqa: E402
from bench_lib.stats import summary  # noqa: E402

from tests.scripts.bench_run import run_bench  # noqa: E402


def _row(clients: int, on: float, off: float) -> dict[str, Any]:
    side = {"p50_s": 1.0, "p95_s": 2.0, "audio_s_per_s": summary([1.0]), "requests": clients}
    return {
        "clients": clients,
        "on": {**side, "req_per_s": summary([on])},
        "off": {**side, "req_per_s": summary([off])},
        "ratio": on / off,
        "round_ratios": summary([on / off]),
    }


def _result(rows: list[dict[str, Any]], runtime: str = "torch (cpu)") -> dict[str, Any]:
    return {
        "rows": rows,
        "runtime": runtime,
        "size": "base",
        "steps": 8,
        "texts": batching.short_texts(),
        "per_client": 2,
        "repeats": 3,
        "window_ms": 20.0,
        "max_concurrency": 8,
        "batch_max_size": 8,
    }


def note(row: dict[str, Any]) -> str:
    return "measured at load 3; shared"


def test_short_texts_are_short_distinct_sentences() -> None:
    texts = batching.short_texts()
    assert len(texts) == 8 and len(set(texts)) == 8 and len({len(t) for t in texts}) > 2
    assert all(t.endswith(".") and t[-2].isalnum() and len(t) <= 49 for t in texts)


def test_goals_cpu_met_missed_and_gpu_not_measured() -> None:
    met = batching.goals(_result([_row(n, 1.0 + n / 100, 1.0) for n in (1, 2, 4, 8)]), note)
    assert [g["met"] for g in met] == [True, None]
    assert "not measured" in met[1]["measured"] and "no GPU" in met[1]["reason"]
    missed = batching.goals(_result([_row(1, 0.9, 1.0), _row(8, 1.5, 1.0)]), note)
    assert missed[0]["met"] is False and "1 clients: 0.90×" in missed[0]["reason"]
    gpu = batching.goals(_result([_row(8, 3.5, 1.0)], runtime="torch (cuda)"), note)
    assert gpu[0]["met"] is None and gpu[1]["met"] is True
    empty = batching.goals({}, note)
    assert [g["met"] for g in empty] == [None, None]


def test_table_has_a_row_per_client_count() -> None:
    table = batching.render(_result([_row(n, 2.0, 1.0) for n in (1, 2, 4, 8)]))
    lines = [ln for ln in table.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert len(lines) == 4 and all("| 2.00 |" in ln for ln in lines)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_batching_section_tiny(tmp_path: Path, reference_dir: Path) -> None:
    data, md = run_bench(
        ["-m", "scripts.bench.batching"],
        [
            "--batching-size",
            "tiny",
            "--batching-clients",
            "1,2",
            "--batching-rounds",
            "1",
            "--batching-per-client",
            "1",
        ],
        tmp_path,
        reference_dir,
        timeout=850,
    )
    res = data["sections"]["batching"]
    assert "error" not in res, res.get("error")
    assert [r["clients"] for r in res["rows"]] == [1, 2]
    for r in res["rows"]:
        assert r["on"]["requests"] == r["off"]["requests"] == r["clients"]
        assert r["on"]["req_per_s"]["median"] > 0 and r["off"]["req_per_s"]["median"] > 0
    assert res["runtime"].startswith("torch")
    assert "## Batching" in md.read_text()
