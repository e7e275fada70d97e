"""Runs a benchmark entry point as a subprocess on the fixture set, into files under a temp dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def bench_env(reference_dir: Path) -> dict[str, str]:
    return {**os.environ, "ZIPVOICE_REFERENCE_DIR": str(reference_dir)}


def run_bench(
    entry: list[str], args: list[str], tmp_path: Path, reference_dir: Path, timeout: float
) -> tuple[dict[str, Any], Path]:
    """``python <entry> <args>`` with its own cache dir, markdown and JSON report; asserts it exits 0
    and returns the JSON report and the markdown path."""
    md, js = tmp_path / "bench.md", tmp_path / "bench.json"
    cmd = [
        sys.executable,
        *entry,
        *args,
        "--cache-dir",
        str(tmp_path / "cache"),
        "--md",
        str(md),
        "--json",
        str(js),
    ]
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=bench_env(reference_dir)
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data: dict[str, Any] = json.loads(js.read_text())
    return data, md
