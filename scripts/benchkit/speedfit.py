"""Two scenarios compared at equal CPU speed by a fit over their runs, not by dividing each run by its speed.

On this kind of shared VM a run's throughput follows the speed probe's reading more than in proportion: over a
day's runs log(req/s) rose 1.6-2.0 times as fast as log(speed), with the same slope for plain mitmdump and for
the addon (the probe feels the host's steal and shared caches; mitmdump, with a larger working set, feels them
more). Dividing by the speed leaves most of that swing in the per-round ratios ([0.79..1.04] in one run of six
rounds). So the log of a figure is fitted as `exponent * log(speed) + level[scenario]`, one exponent for both
scenarios (least squares: the pooled within-scenario slope), and the ratio at equal speed is
exp(level[a] - level[b]), with a 95 % interval from the fit's residuals. Why: docs/benchmark.md, "Fitted to the
CPU speed"."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Student's t, two-sided 95 %, by degrees of freedom (beyond the table: the normal's 1.96 plus a small-sample term).
_T975: tuple[float, ...] = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179)
_T975 += (2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052)
_T975 += (2.048, 2.045, 2.042)


def t975(dof: int) -> float:
    return _T975[dof - 1] if dof <= len(_T975) else 1.96 + 2.4 / dof


@dataclass(frozen=True, slots=True)
class Fit:
    ratio: float  # a over b at equal CPU speed
    low: float  # its 95 % interval
    high: float
    exponent: float  # how the figure follows the speed: figure ~ speed ** exponent
    runs: int  # runs fitted, both scenarios

    def text(self) -> str:
        return f"{self.ratio:.3f}x [95%: {self.low:.3f}..{self.high:.3f}; ~speed^{self.exponent:.2f}, {self.runs} runs]"


@dataclass(frozen=True, slots=True)
class Level:
    value: float  # the figure at CPU speed 1
    low: float  # its 95 % interval
    high: float
    exponent: float  # figure ~ speed ** exponent
    runs: int
    worst: float  # the run farthest from the fit, as a fraction of its fitted value

    def text(self, unit: str) -> str:
        return (
            f"{self.value:.1f}{unit} [95%: {self.low:.1f}..{self.high:.1f}; ~speed^{self.exponent:.2f}, {self.runs} "
            f"runs, the farthest {self.worst:.0%} off]"
        )


def at_speed_one(points: Sequence[tuple[float, float]]) -> Level | None:
    """One scenario's figure at CPU speed 1, from (speed, figure) of its runs, from any number of benchmark runs:
    log(figure) fitted as `level + exponent * log(speed)` (least squares), one level for all, the speed standing for
    the host's hour. None with fewer than three runs or every run at one speed. What `--replay` has no reference
    scenario for: its absolute time (docs/benchmark.md, "Comparison's cost per pair")."""
    pts = [(math.log(s), math.log(v)) for s, v in points if s > 0 and v > 0]
    n = len(pts)
    if n < 3:
        return None
    mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx <= 1e-12:
        return None
    exponent = sum((x - mx) * (y - my) for x, y in pts) / sxx
    level = my - exponent * mx
    residuals = [y - level - exponent * x for x, y in pts]
    se = math.sqrt(sum(r * r for r in residuals) / (n - 2) * (1 / n + mx * mx / sxx))  # of the level, at log 1 = 0
    half = t975(n - 2) * se
    worst = max(abs(math.expm1(r)) for r in residuals)
    return Level(math.exp(level), math.exp(level - half), math.exp(level + half), exponent, n, worst)


def fit(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> Fit | None:
    """`a`, `b`: (speed, figure) of each run of two scenarios, both positive. None with fewer than two runs of
    each, or too few to leave the fit a residual. One benchmark run's case of `pooled`."""
    if sum(s > 0 and v > 0 for s, v in a) < 2 or sum(s > 0 and v > 0 for s, v in b) < 2:
        return None
    return pooled([[*((s, v, True) for s, v in a), *((s, v, False) for s, v in b)]])


def pooled(runs: Sequence[Sequence[tuple[float, float, bool]]]) -> Fit | None:
    """Scenario a over scenario b at equal CPU speed, fitted over several benchmark runs at once: `runs` holds, for
    each run, (speed, figure, is_a) of its quiet measurements of the two. Each run keeps its own level (the host's
    hour), one exponent and one a-over-b ratio are fitted over all (least squares with the levels taken out: each
    variable less its run's mean)."""
    rows: list[tuple[float, float, float]] = []  # (log speed, is_a, log figure), less the run's means
    kept: list[list[tuple[float, float, float]]] = []
    for run in runs:
        pts = [(math.log(s), 1.0 if a else 0.0, math.log(v)) for s, v, a in run if s > 0 and v > 0]
        if len(pts) < 2:
            continue
        kept.append(pts)
        means = [sum(p[i] for p in pts) / len(pts) for i in range(3)]
        rows += [(x - means[0], d - means[1], y - means[2]) for x, d, y in pts]
    dof = len(rows) - 2 - len(kept)
    if dof < 1:
        return None
    sxx = sum(x * x for x, _, _ in rows)
    sdd = sum(d * d for _, d, _ in rows)
    sxd = sum(x * d for x, d, _ in rows)
    sxy = sum(x * y for x, _, y in rows)
    sdy = sum(d * y for _, d, y in rows)
    if sdd <= 1e-12:
        return None  # no run measured both scenarios
    det = sxx * sdd - sxd * sxd
    if sxx <= 1e-12 or det <= 1e-12:
        # Every run at one speed: no exponent to fit (0), the ratio of the scenarios' means, one more residual.
        dof += 1
        exponent, effect, spread = 0.0, sdy / sdd, 1 / sdd
    else:
        exponent = (sdd * sxy - sxd * sdy) / det
        effect = (sxx * sdy - sxd * sxy) / det
        spread = sxx / det
    sse = sum((y - exponent * x - effect * d) ** 2 for x, d, y in rows)
    half = t975(dof) * math.sqrt(sse / dof * spread)
    # Runs differ by more than their own runs scatter (the host's hour moves the two scenarios a little apart):
    # the interval is also no narrower than the spread of each run's own ratio, at the common exponent, allows.
    per_run = [e for pts in kept if (e := _run_effect(pts, exponent)) is not None]
    if len(per_run) >= 2:
        mean = sum(per_run) / len(per_run)
        sd = math.sqrt(sum((e - mean) ** 2 for e in per_run) / (len(per_run) - 1))
        half = max(half, t975(len(per_run) - 1) * sd / math.sqrt(len(per_run)))
    return Fit(math.exp(effect), math.exp(effect - half), math.exp(effect + half), exponent, len(rows))


def _run_effect(pts: Sequence[tuple[float, float, float]], exponent: float) -> float | None:
    """One run's log ratio of a over b at the given exponent: the mean of each scenario's speed-corrected logs."""
    a = [y - exponent * x for x, d, y in pts if d]
    b = [y - exponent * x for x, d, y in pts if not d]
    return sum(a) / len(a) - sum(b) / len(b) if a and b else None
