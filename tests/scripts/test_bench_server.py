"""The server-overhead bench section's own logic (no server, no model): the round orders, the
``/metrics`` clocks, the profile's categories, the decomposition table and the goal row."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from bench_lib.stats import summary  # noqa: E402

from scripts.bench import server  # noqa: E402


def test_rounds_rotate_and_reverse() -> None:
    orders = list(server.rounds(server.VARIANTS, 8))
    assert all(sorted(o) == sorted(server.VARIANTS) for o in orders)
    # every variant is first (and last) equally often over a whole cycle
    assert Counter(o[0] for o in orders) == Counter({v: 2 for v in server.VARIANTS})
    assert Counter(o[-1] for o in orders) == Counter({v: 2 for v in server.VARIANTS})
    # each variant runs right after each other one as often as right before it
    after = Counter((o[j], o[j + 1]) for o in orders for j in range(len(o) - 1))
    assert all(after[(a, b)] == after[(b, a)] for a, b in after)


def test_metric_sums_read_the_speech_route_only() -> None:
    text = "\n".join(
        [
            "# HELP zvs_request_seconds HTTP request latency",
            'zvs_request_seconds_sum{route="/v1/audio/speech"} 2.5',
            'zvs_request_seconds_count{route="/v1/audio/speech"} 2.0',
            'zvs_request_seconds_sum{route="/metrics"} 0.25',
            'zvs_request_seconds_count{route="/metrics"} 7.0',
            'zvs_time_to_first_audio_seconds_sum{model="kokoro"} 1.5',
            'zvs_time_to_first_audio_seconds_count{model="kokoro"} 2.0',
        ]
    )
    assert server.metric_sums(text) == {"handler": 2.5, "ttfa": 1.5, "handled": 2.0}


def test_profile_categories_by_leaf_most_known_frame() -> None:
    engine = (
        "thread (0x1);_bootstrap (/usr/lib/python3.11/threading.py:1);produce (/r/api/synthesis/service.py:9);"
        "synthesize (/r/api/engines/kokoro.py:1);run (/v/onnxruntime/capi/session.py:2)"
    )
    encode = "main;_encode (/r/api/synthesis/service.py:1);write (/r/api/audio/encode.py:3);rint (numpy:1)"
    loop = "main;run_forever (/usr/lib/python3.11/asyncio/base_events.py:1)"
    mw = (
        "main;run (/v/uvicorn/server.py:1);__call__ (/r/api/metrics.py:4);dumps (/usr/lib/json/__init__.py:1)"
    )
    assert server.classify(engine).startswith("engine")
    assert server.classify(encode).startswith("encoder")
    assert server.classify(loop).startswith("event loop and thread hops")
    waiting = "main;serve (/r/api/cli.py:1);run (/usr/lib/python3.11/asyncio/runners.py:118)"
    assert server.classify(waiting).startswith("event loop, waiting")
    assert server.classify(mw).startswith("our routes")
    assert server.classify("main;foo (/x/y.py:1)") == "other"
    raw = f"{engine} 300\n{encode} 20\n{loop} 10\n\n"
    got = server.profile_summary(raw, rate=100, requests=2)
    assert list(got) == [server.classify(engine), server.classify(encode), server.classify(loop)]
    assert got[server.classify(engine)] == 1500.0  # 300 samples at 100/s over 2 requests


def _result(total_ms: float, bare_s: float = 1.0) -> dict:
    per_ms = {"pipeline": 2.0, "app": 1.0, "process": total_ms - 4.0, "http": 1.0}
    dec = {k: summary([v / 1000]) for k, v in per_ms.items()}
    dec |= {
        "engine": summary([bare_s]),
        "service_vs_bare": summary([0.002]),
        "total": summary([total_ms / 1000]),
    }
    ratio = (bare_s + total_ms / 1000) / bare_s
    return {
        "rows": [
            {
                "backend": "kokoro",
                "format": "wav",
                "text_chars": 93,
                "chunks": 2,
                "bare_s": summary([bare_s]),
                "server_s": summary([bare_s * ratio]),
                "ratio_of_medians": ratio,
                "pair_ratio": summary([ratio]),
                "ratios": {"service": summary([1.002]), "app": summary([1.003]), "server": summary([ratio])},
                "server_handler_s": summary([bare_s]),
                "server_ttfa_s": summary([0.5]),
                "decomposition": dec,
                "fixed_ms": {
                    "service": summary([0.9]),
                    "app": summary([2.5]),
                    "app_minus_service": summary([1.6]),
                },
                "cpu_s": {
                    k: summary([v])
                    for k, v in {
                        "bare": 2.0,
                        "service": 2.01,
                        "app": 2.02,
                        "server": 2.03,
                        "client": 0.01,
                        "server_minus_bare": 0.03,
                    }.items()
                },
                "profile": {
                    "status": "ok",
                    "requests": 2,
                    "rate": 200,
                    "ms_per_request": {"engine (x)": 900.0},
                },
            }
        ]
    }


def test_goal_row_names_the_largest_stage() -> None:
    (slow,) = server.goals(_result(60.0), lambda r: "")
    assert slow["met"] is False and slow["measured"] == "1.060×"
    assert "server handler − app +56.0 ms" in slow["reason"].split("; the cost by stage: ")[1].split(",")[0]
    assert "2.5 ms per request for the whole app, 0.9 ms of it the pipeline" in slow["reason"]
    (fast,) = server.goals(_result(10.0), lambda r: "")
    assert fast["met"] is True


def test_render_has_the_decomposition_and_profile_tables() -> None:
    text = server.render(_result(60.0))
    for stage in (
        "engine (bare call)",
        "app − service",
        "server client wall − handler",
        "server − bare (per round)",
    ):
        assert f"| {stage} |" in text
    assert "| engine (x) | 900.0 |" in text
    assert "server − bare per round 30.0 (n=1) ms" in text
    assert "whole app 2.50 (n=1)" in text
    # an old result (no decomposition) still renders
    old = _result(60.0)
    for key in ("decomposition", "profile", "ratios", "cpu_s", "fixed_ms"):
        del old["rows"][0][key]
    assert server.render(old).count("\n") == 2


def test_process_cpu_counts_this_process() -> None:
    import os

    before = server.process_cpu(os.getpid())
    sum(i * i for i in range(3_000_000))  # about 0.1-0.3 s of CPU
    assert server.process_cpu(os.getpid()) > before >= 0
