#!/usr/bin/env python3
"""Benchmark harness entry point; the code is the package ``scripts/bench/`` (see its docstring).

.venv/bin/python scripts/bench.py                       # everything (~15 min on 2 idle cores)
.venv/bin/python scripts/bench.py --quick               # lighter plan (~5 min)
.venv/bin/python scripts/bench.py --sections engine,server --repeats 5
.venv/bin/python scripts/bench.py engine --quick        # one section
.venv/bin/python -m scripts.bench.engine --quick        # the same, as the section's module
.venv/bin/python scripts/bench.py --render              # re-render the markdown from the JSON
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/: the ``bench`` package

from bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
