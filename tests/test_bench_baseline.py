"""`scripts/bench --baseline`: a second shadow_addon package measured in the same rounds, each addon scenario's
twin against the same reference, and the measured package over it round by round (pure: no process)."""

from __future__ import annotations

import sys

import pytest
from support import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

from benchkit.runs import Run  # noqa: E402
from benchkit.scenarios import scenario, select_scenarios, with_baseline  # noqa: E402
from benchkit.summary import summarise  # noqa: E402


def test_a_baseline_twins_every_addon_scenario_against_the_same_reference() -> None:
    names = with_baseline(select_scenarios("slow")[0])
    assert names == ["plain", "healthy", "healthy@base", "slow", "slow@base"]
    assert scenario("healthy@base").reference == "plain"  # plain mitmdump has no package
    assert scenario("slow@base").reference == "healthy@base"  # the baseline's own healthy
    assert scenario("slow@base").baseline and not scenario("slow").baseline
    assert scenario("slow@base").shadow == scenario("slow").shadow
    assert with_baseline(names) == names  # twins are not twinned again
    with pytest.raises(KeyError):
        scenario("plain@base")


def test_the_measured_package_over_the_baseline_is_taken_round_by_round() -> None:
    names = with_baseline(["plain", "healthy"])
    runs = [
        Run(1, "plain", rps=1000.0, p50_ms=1.0, p99_ms=2.0, cpu_us_per_request=100.0),
        Run(1, "healthy", rps=900.0, p50_ms=1.2, p99_ms=2.4, cpu_us_per_request=120.0),
        Run(1, "healthy@base", rps=800.0, p50_ms=1.5, p99_ms=3.0, cpu_us_per_request=150.0),
        # A slower round for both: the ratio within it is what counts.
        Run(2, "plain", rps=500.0, p50_ms=2.0, p99_ms=4.0, cpu_us_per_request=200.0),
        Run(2, "healthy", rps=500.0, p50_ms=2.0, p99_ms=4.0, cpu_us_per_request=200.0),
        Run(2, "healthy@base", rps=400.0, p50_ms=2.5, p99_ms=5.0, cpu_us_per_request=250.0),
    ]
    summary, _ = summarise(runs, names, 4)
    over = summary["healthy"]["over_base"]
    assert over["throughput_per_round"] == [900 / 800, 500 / 400]
    assert over["throughput"] == pytest.approx((900 / 800 + 500 / 400) / 2)
    assert over["p50_per_round"] == [1.2 / 1.5, 2.0 / 2.5]
    assert over["cpu_per_request"] == pytest.approx(0.8)
    assert "over_base" not in summary["healthy@base"] and "over_base" not in summary["plain"]
    assert summary["healthy@base"]["throughput_ratio"] == pytest.approx((0.8 + 0.8) / 2)  # against plain too
