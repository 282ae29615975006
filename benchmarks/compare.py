"""Compare two ``make bench`` result files and flag regressions over a threshold (issue 11).

Usage: ``python benchmarks/compare.py OLD.json NEW.json [--threshold 0.10]``. Exit status 1 when any figure got
worse by more than the threshold (default 10%), 0 otherwise, 2 when the files cannot be compared (another
benchmark, unreadable JSON).

Both files come from the same benchmark (``launch-*.json`` or ``fulfillment-*.json``). Every number is compared
by its path (``rows[150 ms x5].launch_to_form_ms.p95``; rows are matched by EHR latency and concurrency, not by
position). Whether more is better is read from the figure's name: throughputs (``per_s``) and nothing else are
better higher; times (``_ms``, ``_s``, ``p50``...), overheads, ratios, CPU, memory (``mib``) and SQL statements
(``queries_per_page``) are better lower. The machine, the settings, the targets and counts (``launches``,
``orders``...) are context, not figures, and are skipped; a figure in only one file is listed, not judged.
"""

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

CONTEXT = {"machine", "settings", "targets", "benchmark", "utc"}
COUNTS = {"launches", "orders", "acknowledged", "samples", "signed_orders", "ehr_latency_ms", "concurrency"}
HIGHER_IS_BETTER = ("per_s",)
LOWER_IS_BETTER = (
    "_ms",
    "_s",
    "p50",
    "p95",
    "p99",
    "max",
    "min",
    "overhead",
    "ratio",
    "cpu",
    "mib",
    "queries_per_page",
    "requests_per_launch",
    "rounds",
)


def figures(result: object, path: str = "") -> Iterator[tuple[str, float]]:
    """Yield ``(path, value)`` for every number in ``result`` outside the context sections; a list of rows that
    carry ``ehr_latency_ms`` and ``concurrency`` is keyed by them (``rows[150 ms x5]``)."""
    if isinstance(result, bool):
        return
    if isinstance(result, int | float):
        yield path, float(result)
    elif isinstance(result, dict):
        for key, value in result.items():
            if (not path and key in CONTEXT) or key in COUNTS:
                continue
            yield from figures(value, f"{path}.{key}" if path else str(key))
    elif isinstance(result, list):
        for index, value in enumerate(result):
            if isinstance(value, dict) and {"ehr_latency_ms", "concurrency"} <= value.keys():
                label = f"{value['ehr_latency_ms']} ms x{value['concurrency']}"
            else:
                label = str(index)
            yield from figures(value, f"{path}[{label}]")


def direction(path: str) -> int:
    """+1 when a larger value of the figure at ``path`` is better, -1 when smaller is better, 0 when unknown."""
    lowered = path.lower()
    if any(part in lowered for part in HIGHER_IS_BETTER):
        return 1
    if any(part in lowered for part in LOWER_IS_BETTER):
        return -1
    return 0


def compare(old: dict[str, object], new: dict[str, object], threshold: float) -> tuple[list[str], list[str]]:
    """Return ``(regressions, notes)``: one line per figure worse by more than ``threshold`` (a fraction), and
    lines for figures improved by more than it, present in only one file, or of unknown direction.

    Raises ``ValueError`` when the files are of different benchmarks."""
    if old.get("benchmark") != new.get("benchmark"):
        raise ValueError(f"different benchmarks: {old.get('benchmark')!r} and {new.get('benchmark')!r}")
    before, after = dict(figures(old)), dict(figures(new))
    regressions, notes = [], []
    for path in sorted(before.keys() | after.keys()):
        if path not in before or path not in after:
            notes.append(f"only in {'new' if path in after else 'old'}: {path}")
            continue
        sign = direction(path)
        was, now = before[path], after[path]
        if sign == 0:
            notes.append(f"not judged (unknown direction): {path} {was:g} -> {now:g}")
            continue
        if was == 0:
            continue
        change = (now - was) / abs(was)
        line = f"{path}: {was:g} -> {now:g} ({change:+.1%})"
        if -sign * change > threshold:
            regressions.append("REGRESSION " + line)
        elif sign * change > threshold:
            notes.append("better " + line)
    return regressions, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--threshold", type=float, default=0.10, help="fraction; default 0.10 (10%%)")
    args = parser.parse_args(argv)
    try:
        regressions, notes = compare(json.loads(args.old.read_text()), json.loads(args.new.read_text()), args.threshold)
    except (OSError, ValueError) as exc:
        print(f"cannot compare: {exc}", file=sys.stderr)
        return 2
    for line in [*regressions, *notes]:
        print(line)
    print(f"{len(regressions)} regression(s) over {args.threshold:.0%}")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
