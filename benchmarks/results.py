"""Benchmark results: the machine they ran on, percentiles, and the JSON file each benchmark writes under
``BENCH_RESULTS_DIR`` (default ``benchmarks/results/``); ``benchmarks/compare.py`` compares two of them."""

import json
import os
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path

from django.db import connection

RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR", str(Path(__file__).resolve().parent / "results")))


def machine() -> dict[str, object]:
    """What the numbers depend on: CPUs, memory, platform, Python, database and the load average now."""
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "database": connection.vendor,
        "load_average_at_start": list(os.getloadavg()),
    }


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50, p95, p99 and max of ``seconds``, in milliseconds (one decimal); p95 and p99 by the exclusive method of
    ``statistics.quantiles`` (they need at least two samples; with one, every figure is that sample)."""
    ms = sorted(value * 1000 for value in seconds)
    if len(ms) < 2:
        only = round(ms[0], 1) if ms else 0.0
        return {"p50": only, "p95": only, "p99": only, "max": only}
    cuts = statistics.quantiles(ms, n=100)
    return {
        "p50": round(statistics.median(ms), 1),
        "p95": round(cuts[94], 1),
        "p99": round(cuts[98], 1),
        "max": round(ms[-1], 1),
    }


def save(name: str, result: dict[str, object]) -> Path:
    """Write ``result`` as ``<RESULTS_DIR>/<name>-<UTC timestamp>.json``; return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
