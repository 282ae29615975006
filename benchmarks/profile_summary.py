"""Summarise a ``BENCH_PROFILE=1`` run (``benchmarks/profiled_wsgi.py``): per clinician page, the requests sampled,
the wall time per request, and the heaviest of our own functions and of the libraries, each as the share of the
page's time spent in it (including what it calls).

    .venv/bin/python benchmarks/profile_summary.py benchmarks/results/profile [--top 12]

Reads every ``<page>-<pid>.json`` in the folder and combines each page's sessions across worker processes.
"""

import argparse
from collections import defaultdict
from pathlib import Path

from pyinstrument.frame import Frame
from pyinstrument.session import Session

PAGES = ("launch", "callback", "prefill", "order_form", "sign")
SKIP = ("benchmarks/profiled_wsgi.py", "django/core/handlers", "django/utils/deprecation.py", "<thread>")


def _inclusive(frame: Frame, totals: dict[str, float], seen: frozenset[str]) -> None:
    """Add each function's time once per call path (recursion counted once), keyed ``function  file:line``."""
    key = f"{frame.function}  {frame.file_path_short}:{frame.line_no}"
    if key not in seen:
        totals[key] += frame.time
        seen = seen | {key}
    for child in frame.children:
        _inclusive(child, totals, seen)


def _package(path: str) -> str:
    """``django/db/models/query.py`` -> ``django.db``; ``psycopg/...`` -> ``psycopg``; ours by app."""
    parts = [p for p in path.replace("\\", "/").split("/") if p and p != "site-packages"]
    if "healthcommerce" in parts:
        at = parts.index("healthcommerce")
        return ".".join(parts[at : at + 2]).removesuffix(".py")
    for name in ("django", "psycopg", "cryptography", "fhirclient", "requests", "urllib3", "authlib", "joserfc"):
        if name in parts:
            at = parts.index(name)
            return ".".join(parts[at : at + 2]).removesuffix(".py") if name == "django" else name
    return parts[-1].removesuffix(".py") if parts else "?"


def _self_by_package(frame: Frame, totals: dict[str, float]) -> None:
    if frame.file_path:
        totals[_package(frame.file_path)] += frame.total_self_time
    for child in frame.children:
        _self_by_package(child, totals)


def summary(folder: Path, top: int) -> str:
    """Return the summary text of the profiles in ``folder``."""
    lines = []
    for page in PAGES:
        sessions = [Session.load(str(path)) for path in sorted(folder.glob(f"{page}-*.json"))]
        if not sessions:
            continue
        session = sessions[0]
        for other in sessions[1:]:
            session = Session.combine(session, other)
        root = session.root_frame()
        if root is None:
            continue
        totals: dict[str, float] = defaultdict(float)
        _inclusive(root, totals, frozenset())
        handle = max((v for k, v in totals.items() if k.startswith("application ")), default=root.time)
        ours = [
            (k, v)
            for k, v in totals.items()
            if "healthcommerce/" in k and not any(s in k for s in SKIP) and not k.startswith("__call__ ")
        ]
        by_package: dict[str, float] = defaultdict(float)
        _self_by_package(root, by_package)
        lines.append(f"== {page}: {session.duration:.2f} s sampled, CPU {session.cpu_time:.2f} s")
        for key, seconds in sorted(ours, key=lambda kv: -kv[1])[:top]:
            lines.append(f"  {100 * seconds / handle:5.1f}%  {key}")
        spent = sorted(by_package.items(), key=lambda kv: -kv[1])[:8]
        lines.append("  self time by package: " + ", ".join(f"{name} {100 * t / handle:.0f}%" for name, t in spent))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    print(summary(args.folder, args.top))


if __name__ == "__main__":
    main()
