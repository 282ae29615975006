"""One line at the end of a test run naming every group of skipped tests and why (a pytest plugin).

Outside CI a test that needs what this machine lacks (Debian's chromium, PostgreSQL and Redis, Medusa,
the HL7 peer, the X12 validator, localstripe) is skipped; with ``CI`` set it fails instead (tests/conftest.py,
tests/e2e/conftest.py, tests/test_ci_services.py). So that a skip is never silent, ``make test`` ends with, for
example::

    skipped: 15 browser tests (chromium is not installed: apt-get install chromium), 6 PostgreSQL/Redis tests
    (they need PostgreSQL and Redis: set DATABASE_URL and CELERY_BROKER_URL as .ci/run does)

tests/conftest.py imports the hook; ``pytest -p tests.skips`` loads it alone (tests/test_skips.py).
"""

from collections import Counter

import pytest

# (group, words any of which in a skip reason puts the test in the group, why and what to do). First match wins.
GROUPS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("browser", ("chromium",), "chromium is not installed: apt-get install chromium"),
    ("HL7 peer", ("HL7 peer",), "the HL7 v2 peer is not set up: make hl7-peer-setup (Node.js 20.15+ and npm)"),
    ("X12 validator", ("X12 validator",), "the X12 validator is not set up: make x12-validator-setup"),
    (
        "Medusa",
        ("Medusa", "medusa", "Node.js"),
        "Medusa is not set up: make medusa-setup (Node.js 20.19+, npm and PostgreSQL)",
    ),
    ("localstripe", ("localstripe",), "localstripe is not installed: pip install -r requirements-dev.txt"),
    (
        "fault-injection",
        ("make test-faults",),
        "make test-faults needs PostgreSQL's binaries and redis-server",
    ),
    (
        "PostgreSQL/Redis",
        ("PostgreSQL", "Redis", "SQLite"),
        "they need PostgreSQL and Redis: set DATABASE_URL and CELERY_BROKER_URL as .ci/run does",
    ),
)


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """Return the reason a skipped ``report`` gives (pytest's ``longrepr`` is ``(path, line, "Skipped: why")``)."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ").strip()


def skip_summary(reasons: list[str]) -> str:
    """Return the one line naming each group of skipped tests with its count and why; ``""`` when none was.

    Reasons that fit no group in ``GROUPS`` are grouped by their own text. Groups are in ``GROUPS`` order, then
    the others by count.
    """
    counts: Counter[tuple[str, str]] = Counter()
    for reason in reasons:
        for group, words, why in GROUPS:
            if any(word in reason for word in words):
                counts[(f"{group} tests", why)] += 1
                break
        else:
            counts[("tests", reason or "no reason given")] += 1
    order = {f"{group} tests": number for number, (group, _, _) in enumerate(GROUPS)}
    ranked = sorted(counts.items(), key=lambda item: (order.get(item[0][0], len(order)), -item[1]))
    parts = [f"{count} {name[:-1] if count == 1 else name} ({why})" for (name, why), count in ranked]
    return "skipped: " + ", ".join(parts) if parts else ""


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    """Write ``skip_summary`` of this run's skipped tests as the last line before pytest's own counts."""
    reports = terminalreporter.stats.get("skipped", [])
    # A skip in set-up and one in the call are one test each; pytest reports every skipped test exactly once.
    line = skip_summary([skip_reason(report) for report in reports])
    if line:
        terminalreporter.write_line(line, yellow=True, bold=True)
