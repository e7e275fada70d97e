"""Benchmark harness: engine RTF/RSS, server overhead, streaming, voice reuse, concurrency, batching,
transcription.

    .venv/bin/python scripts/bench.py                       # everything (~15 min on 2 idle cores)
    .venv/bin/python scripts/bench.py --quick               # lighter plan (~5 min)
    .venv/bin/python scripts/bench.py --sections engine,server --repeats 5
    .venv/bin/python scripts/bench.py engine --quick        # one section (same as --sections engine)
    .venv/bin/python -m scripts.bench.engine --quick        # the same, run as the section's module

Writes ``docs/benchmarks.md`` (a table per section, the machine, the date, the command line, a goals
table) and ``docs/benchmarks.json`` (the same figures, raw samples included).

Method: every figure is the median of ``--repeats`` timed runs with its spread (min–max), after
warm-up runs that are not counted. ZipVoice runs on full-size random-weight checkpoints and a
full-size random Vocos (same shapes, same compute as the real weights; built once into
``--cache-dir``). Each engine row runs in a fresh subprocess so its peak RSS is its own. Server
figures come from the real server (``api.cli`` in a subprocess, as the e2e tests start it) over
HTTP with httpx. Full-size ZipVoice is slow on CPU: its rows share a time budget
(``--zipvoice-budget``); a row whose projected cost (from a 1-step run of the same text) does not
fit gets fewer repeats or is skipped, and the projection is reported instead.

Layout: :mod:`harness` holds what the sections share (the section registry, interleaving, stats,
machine info, the server helpers, goals and the markdown/JSON report); :mod:`cli` the command line;
each other module is one section that registers itself with :func:`harness.section`. Adding a
section is adding one module (see :mod:`harness` for the contract).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
for _path in (REPO_ROOT, REPO_ROOT / "scripts"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
