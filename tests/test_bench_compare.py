"""``benchmarks/compare.py`` flags a figure that got worse by more than 10%, in the right direction."""

import copy
import json
from pathlib import Path

import pytest

from benchmarks.compare import compare, direction, main

LAUNCH = {
    "benchmark": "launch",
    "machine": {"cpu_count": 2, "load_average_at_start": [0.5, 0.4, 0.3]},
    "settings": {"concurrency": [1, 5]},
    "rows": [
        {
            "ehr_latency_ms": 150,
            "concurrency": 1,
            "launches": 20,
            "launch_to_form_ms": {"p50": 560.0, "p95": 600.0},
            "ratio_app_to_naive": {"p50": 0.5},
        },
        {"ehr_latency_ms": 150, "concurrency": 5, "launches": 20, "launch_to_form_ms": {"p50": 700.0, "p95": 900.0}},
    ],
    "peak_memory_mib": {"web": {"child-1": 106.0}},
    "targets": {"p95_met": False},
}
FULFILLMENT = {"benchmark": "fulfillment", "throughput": {"orders": 300, "orders_per_s_acknowledged": 40.0}}


def test_directions_follow_the_figure_names() -> None:
    assert direction("throughput.orders_per_s_acknowledged") == 1
    assert direction("rows[150 ms x5].launch_to_form_ms.p95") == -1
    assert direction("peak_memory_mib.web.child-1") == -1
    assert direction("queries_per_page.prefill") == -1


def test_a_slower_p95_and_more_memory_are_regressions_and_rows_match_by_latency_and_concurrency() -> None:
    new = copy.deepcopy(LAUNCH)
    new["rows"].reverse()  # order does not matter
    new["rows"][0]["launch_to_form_ms"]["p95"] = 1000.0  # x5: +11%
    new["rows"][1]["launch_to_form_ms"]["p50"] = 600.0  # x1: +7%, within 10%
    new["peak_memory_mib"]["web"]["child-1"] = 130.0
    new["machine"]["load_average_at_start"] = [3.0, 3.0, 3.0]  # context, never judged

    regressions, _ = compare(LAUNCH, new, 0.10)

    assert regressions == [
        "REGRESSION peak_memory_mib.web.child-1: 106 -> 130 (+22.6%)",
        "REGRESSION rows[150 ms x5].launch_to_form_ms.p95: 900 -> 1000 (+11.1%)",
    ]


def test_lower_throughput_is_a_regression_and_higher_is_better() -> None:
    worse = {"benchmark": "fulfillment", "throughput": {"orders": 300, "orders_per_s_acknowledged": 30.0}}
    better = {"benchmark": "fulfillment", "throughput": {"orders": 300, "orders_per_s_acknowledged": 90.0}}

    assert compare(FULFILLMENT, worse, 0.10)[0] == [
        "REGRESSION throughput.orders_per_s_acknowledged: 40 -> 30 (-25.0%)"
    ]
    regressions, notes = compare(FULFILLMENT, better, 0.10)
    assert regressions == [] and notes == ["better throughput.orders_per_s_acknowledged: 40 -> 90 (+125.0%)"]


def test_the_command_exits_1_on_a_regression_0_without_and_2_for_different_benchmarks(tmp_path: Path) -> None:
    old, new, other = tmp_path / "old.json", tmp_path / "new.json", tmp_path / "other.json"
    old.write_text(json.dumps(LAUNCH))
    slower = copy.deepcopy(LAUNCH)
    slower["rows"][0]["ratio_app_to_naive"]["p50"] = 0.8
    new.write_text(json.dumps(slower))
    other.write_text(json.dumps(FULFILLMENT))

    assert main([str(old), str(new)]) == 1
    assert main([str(old), str(old)]) == 0
    assert main([str(old), str(other)]) == 2


@pytest.mark.parametrize("threshold", [0.5])
def test_the_threshold_is_a_setting(threshold: float) -> None:
    slower = copy.deepcopy(LAUNCH)
    slower["rows"][0]["launch_to_form_ms"]["p95"] = 800.0  # +33%

    assert compare(LAUNCH, slower, threshold)[0] == []
