"""The interleaved runs summarised: medians per scenario, per-round ratios against each reference, the checks
against the targets (docs/benchmark.md, "Targets") and notes on what the checks do not cover."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from benchkit import report
from benchkit.report import Check, counts, spread
from benchkit.runs import Run
from benchkit.scenarios import BAD_SHADOWS, BASE, COMPARE_CASES, HOSTILE, scenario
from benchkit.speedfit import Fit, fit

FD_SLACK = 16
OTHER_LOAD_PCT = 25.0  # % of a core used outside the benchmark during a run: flagged as disturbed
RSS_HEADROOM_MIB = 32.0  # blackhole vs plain
HOSTILE_RSS_MIB = 50.0  # a hostile shadow vs its reference
COMPARE_MATCH_MIN = 0.99  # share of compared pairs that must match on the compare scenario (identical documents)
READY_S_10K = 3.0  # s from mitmdump's start to its first answer with 10,000 Mappings


def _median(values: Sequence[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


def _sum_counts(dicts: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, n in d.items():
            out[k] = out.get(k, 0) + n
    return dict(sorted(out.items()))


def _per_round(runs: dict[int, Run], ref: dict[int, Run], key: str) -> list[float]:
    """`key` of each round's run over its reference's in the same round (rounds the reference measured)."""
    return [getattr(r, key) / getattr(ref[i], key) for i, r in runs.items() if i in ref and getattr(ref[i], key) > 0]


OVER_BASE = (("rps", "throughput"), ("p50_ms", "p50"), ("p99_ms", "p99"), ("cpu_us_per_request", "cpu_per_request"))
FITTED = (("rps", "throughput"), ("p50_ms", "p50"), ("cpu_us_per_request", "cpu_per_request"))


def quiet(speed: float | None, other_pct: float | None) -> bool:
    """Whether a run counts in a fit: its speed probed, and not disturbed (the report's flag); None, as a run's
    JSON writes NaN, is not measured."""
    return speed is not None and not math.isnan(speed) and not (other_pct is not None and other_pct > OTHER_LOAD_PCT)


def fitted(runs: dict[int, Run], ref: dict[int, Run]) -> dict[str, Fit]:
    """Each FITTED figure of `runs` over `ref` at equal CPU speed (`speedfit`), from their quiet runs; a figure
    is left out when there are too few (or no speed probe)."""
    out: dict[str, Fit] = {}
    for key, label in FITTED:
        quiet_runs = ([r for r in g.values() if quiet(r.core_speed, r.cpu_other_pct)] for g in (runs, ref))
        f = fit(*([(r.core_speed, getattr(r, key)) for r in rs] for rs in quiet_runs))
        if f is not None:
            out[label] = f
    return out


def over_baseline(by: dict[str, dict[int, Run]], summary: dict[str, dict[str, Any]]) -> None:
    """For each scenario with a NAME@base twin: the measured package over the baseline, round by round (each pair
    ran minutes apart at most, on the same machine state), into summary[NAME]["over_base"]."""
    for n, runs in by.items():
        twin = by.get(n + BASE)
        if n.endswith(BASE) or twin is None:
            continue
        out: dict[str, Any] = {}
        for k, label in OVER_BASE:
            per_round = _per_round(runs, twin, k)
            out[label], out[label + "_per_round"] = _median(per_round), per_round
        out["fitted"] = fitted(runs, twin)
        summary[n]["over_base"] = out


def summarise(runs: list[Run], names: list[str], max_inflight: int) -> tuple[dict[str, dict[str, Any]], list[Check]]:
    by: dict[str, dict[int, Run]] = {n: {} for n in names}
    for r in runs:
        by[r.scenario][r.round] = r
    summary: dict[str, dict[str, Any]] = {}
    for n in names:
        rs = list(by[n].values())
        scn = scenario(n)
        row: dict[str, Any] = {
            "rounds": len(rs),
            "reference": scn.reference,
            "description": scn.description,
            "rps": _median([r.rps for r in rs]),
            "core_speed": _median([r.core_speed for r in rs]),
            "p50_ms": _median([r.p50_ms for r in rs]),
            "p99_ms": _median([r.p99_ms for r in rs]),
            "errors": sum(r.errors + r.unfinished for r in rs),
            "prod_received": sum(r.prod_received for r in rs),
            "shadow_received": sum(r.shadow_received for r in rs),
            "shadow_marked": sum(r.shadow_marked for r in rs),
            "peak_rss_mib": max((r.peak_rss_mib for r in rs), default=math.nan),
            "hwm_rss_mib": max((r.hwm_rss_mib for r in rs), default=math.nan),
            "peak_fds": max((r.peak_fds for r in rs), default=-1),
            "rss_growth_mib": _median([r.rss_growth_mib for r in rs]),
            "cpu_mitmdump_pct": _median([r.cpu_mitmdump_pct for r in rs]),
            "cpu_upstreams_pct": _median([r.cpu_upstreams_pct for r in rs]),
            "cpu_client_pct": _median([r.cpu_client_pct for r in rs]),
            "cpu_other_pct": _median([r.cpu_other_pct for r in rs]),
            "cpu_us_per_request": _median([r.cpu_us_per_request for r in rs]),
            "cpu_system_us_per_request": _median([r.cpu_system_us_per_request for r in rs]),
            "ready_s": _median([r.ready_s for r in rs]),
            "ready_s_max": max((r.ready_s for r in rs), default=math.nan),
            "ready_cpu_s": _median([r.ready_cpu_s for r in rs]),
            "addon_drops": _sum_counts(r.addon_drops for r in rs),
            "addon_shadow_codes": _sum_counts(r.addon_shadow_codes for r in rs),
            "addon_compare": _sum_counts(r.addon_compare for r in rs),
            "addon_compare_pending": sum(r.addon_compare_pending for r in rs),
        }
        row["delivery"] = row["shadow_received"] / row["prod_received"] if scn.shadow and row["prod_received"] else None
        ref = scn.reference
        if ref in by:
            for k, key in (
                ("rps", "throughput_ratio"),
                ("rps_norm", "norm_throughput_ratio"),
                ("p50_ms", "p50_ratio"),
                ("p99_ms", "p99_ratio"),
                ("cpu_us_per_request", "cpu_per_request_ratio"),
            ):
                per_round = _per_round(by[n], by[ref], k)
                row[key + "_per_round"] = per_round
                row[key] = _median(per_round)
            row["fitted"] = fitted(by[n], by[ref])
        summary[n] = row
    over_baseline(by, summary)

    checks: list[Check] = []

    def ratio_check(n: str, key: str, label: str, op: str, limit: float) -> Check | None:
        if n not in summary or key not in summary[n]:
            return None
        v = summary[n][key]
        ok = v >= limit if op == ">=" else v <= limit
        res = "n/a" if math.isnan(v) else "PASS" if ok else "FAIL"
        value = "no request measured" if math.isnan(v) else f"{v:.3f}x{spread(summary[n][key + '_per_round'])}"
        checks.append(Check(f"{n} vs {summary[n]['reference']}: {label}", value, f"{op} {limit:g}x", res, v))
        return checks[-1]

    # With the speed probe, throughput is compared at equal CPU speed; the ratio as measured is shown as "info".
    normalised = bool(runs) and all(not math.isnan(r.core_speed) for r in runs)

    def throughput_check(n: str, limit: float) -> None:
        f = summary.get(n, {}).get("fitted", {}).get("throughput") if normalised else None
        if f is not None:  # the fit where there are runs for it (speedfit); the per-round median is then shown
            ok = "PASS" if f.ratio >= limit else "FAIL"
            name = f"{n} vs {summary[n]['reference']}: throughput at equal CPU speed, fitted"
            checks.append(Check(name, f.text(), f">= {limit:g}x", ok, f.ratio))
        if normalised:
            median = ratio_check(n, "norm_throughput_ratio", "throughput at equal CPU speed", ">=", limit)
            if f is not None and median is not None:
                median.name += ", per-round median"
                median.result = "info"
        raw = ratio_check(n, "throughput_ratio", "throughput as measured" if normalised else "throughput", ">=", limit)
        if normalised and raw is not None:
            raw.result = "info"

    throughput_check("healthy", 0.85)
    ratio_check("healthy", "p50_ratio", "p50 latency", "<=", 1.15)
    # The hand-off's own targets, read from the fit (speedfit): what the per-round medians are too noisy to show.
    for label, op, limit in (("throughput", ">=", 0.90), ("p50", "<=", 1.10), ("cpu_per_request", "<=", 1.12)):
        f = summary.get("healthy", {}).get("fitted", {}).get(label)
        if f is not None:
            ok = f.ratio >= limit if op == ">=" else f.ratio <= limit
            name = f"healthy vs plain: {label.replace('_', ' ')}, fitted to CPU speed"
            checks.append(Check(name, f.text(), f"{op} {limit:g}x", "met" if ok else "not met", f.ratio))
    if "healthy" in summary and "p99_ratio" in summary["healthy"]:
        v = summary["healthy"]["p99_ratio"]
        value = f"{v:.3f}x{spread(summary['healthy']['p99_ratio_per_round'])}"
        checks.append(Check("healthy vs plain: p99 latency", value, "(no target)", "-", v))
    if "healthy" in summary:
        h = summary["healthy"]
        got, want = h["shadow_received"], h["prod_received"]
        frac = got / want if want else math.nan
        res = "n/a" if not want else "PASS" if got >= want else "PASS*" if frac >= 0.999 else "FAIL"
        checks.append(Check("healthy: delivery to the shadow", f"{frac:.4%} ({got}/{want})", "100%", res, frac))
    throughput_check("compare", 0.80)
    if "compare" in by and "healthy" in by:
        # Comparing every pair of a healthy shadow costs production little beyond copying it.
        key = "rps_norm" if normalised else "rps"
        per_round = _per_round(by["compare"], by["healthy"], key)
        v = _median(per_round)
        res = "n/a" if math.isnan(v) else "PASS" if v >= 0.85 else "FAIL"
        label = "throughput at equal CPU speed" if normalised else "throughput"
        checks.append(Check(f"compare vs healthy: {label}", f"{v:.3f}x{spread(per_round)}", ">= 0.85x", res, v))
    if "compare" in summary:
        compared = summary["compare"]["addon_compare"]
        total = sum(compared.values())
        share = compared.get("match", 0) / total if total else math.nan
        res = "n/a" if not total else "PASS" if share >= COMPARE_MATCH_MIN else "FAIL"
        value = f"{share:.2%} ({compared.get('match', 0)}/{total})" if total else "no shadow_compare_total"
        checks.append(Check("compare: pairs that match", value, f">= {COMPARE_MATCH_MIN:.0%}", res, share))

    def rss_check(n: str, ref: str, headroom: float) -> None:
        if n not in summary or ref not in summary:
            return
        got, base = summary[n]["hwm_rss_mib"], summary[ref]["hwm_rss_mib"]
        res = "n/a" if math.isnan(got) or math.isnan(base) else "PASS" if got <= base + headroom else "FAIL"
        value = f"{got:.1f} MiB ({ref} {base:.1f})"
        checks.append(Check(f"{n}: peak RSS (VmHWM)", value, f"<= {base + headroom:.1f} MiB", res, got))

    for n in BAD_SHADOWS:
        throughput_check(n, 0.90)
        ratio_check(n, "p99_ratio", "p99 latency", "<=", 1.5)
    if "blackhole" in summary and "plain" in summary:
        b, p = summary["blackhole"], summary["plain"]
        fd_limit = p["peak_fds"] + max_inflight + FD_SLACK
        res = "n/a" if b["peak_fds"] < 0 or p["peak_fds"] < 0 else "PASS" if b["peak_fds"] <= fd_limit else "FAIL"
        checks.append(
            Check("blackhole: peak open fds", f"{b['peak_fds']} (plain {p['peak_fds']})", f"<= {fd_limit}", res)
        )
    rss_check("blackhole", "plain", RSS_HEADROOM_MIB)
    for n in COMPARE_CASES:
        throughput_check(n, 0.90)
        ratio_check(n, "p99_ratio", "p99 latency", "<=", 1.5)
        rss_check(n, scenario(n).reference or "compare", HOSTILE_RSS_MIB)
    for n in HOSTILE:
        throughput_check(n, 0.95)
        ratio_check(n, "p99_ratio", "p99 latency", "<=", 1.5)
        rss_check(n, scenario(n).reference or "healthy", HOSTILE_RSS_MIB)
    # 100% of gRPC calls copied over HTTP/2 against the same proxy routing them without a shadow.
    throughput_check("grpc", 0.90)
    if "grpc" in summary:
        g = summary["grpc"]
        got, want = g["shadow_received"], g["prod_received"]
        frac = got / want if want else math.nan
        res = "n/a" if not want else "PASS" if got >= want else "PASS*" if frac >= 0.999 else "FAIL"
        checks.append(Check("grpc: delivery to the shadow", f"{frac:.4%} ({got}/{want})", "100%", res, frac))
    # Routing whose cost does not grow with the number of Mappings, and a start-up that does not either.
    throughput_check("map10k", 0.90)
    throughput_check("regex200", 0.90)
    if "map10k" in summary:
        v = summary["map10k"]["ready_s_max"]
        ref = f" (map10 {summary['map10']['ready_s']:.2f})" if "map10" in summary else ""
        res = "n/a" if math.isnan(v) else "PASS" if v <= READY_S_10K else "FAIL"
        checks.append(
            Check("map10k: start-up to first answer, worst run", f"{v:.2f} s{ref}", f"<= {READY_S_10K:g} s", res, v)
        )
    return summary, checks


def notes(runs: list[Run], summary: dict[str, dict[str, Any]], checks: list[Check]) -> list[str]:
    """Things worth a look that the checks do not cover."""
    out = []
    for r in runs:
        if r.errors or r.unfinished:
            out.append(f"round {r.round} {r.scenario}: {r.errors} client errors, {r.unfinished} unfinished")
        bad = report.alarming(r.mitmdump_output)
        if bad:
            out.append(f"round {r.round} {r.scenario}: mitmdump printed: {' | '.join(bad[:3])[:300]}")
        if scenario(r.scenario).addon and not r.addon_metrics_ok:
            out.append(f"round {r.round} {r.scenario}: the addon's /metrics did not answer after the load")
        if r.shadow_received != r.shadow_marked:
            out.append(
                f"round {r.round} {r.scenario}: {r.shadow_received - r.shadow_marked} requests reached the shadow "
                "without the x-mitmproxy-shadow mark"
            )
    printed = [r for r in runs if r.mitmdump_output]
    if printed:
        out.append(
            f"{len(printed)} of {len(runs)} mitmdump runs printed output (no error or warning among it unless listed "
            "above; e.g. the addon's summary table at exit): see mitmdump_output in the JSON"
        )
    busy = [r for r in runs if not math.isnan(r.cpu_other_pct) and r.cpu_other_pct > OTHER_LOAD_PCT]
    if busy:
        worst = max(busy, key=lambda r: r.cpu_other_pct)
        out.append(
            f"{len(busy)} of {len(runs)} runs shared the machine with other work (> {OTHER_LOAD_PCT:g}% of a core "
            f"outside the benchmark; worst: round {worst.round} {worst.scenario}, {worst.cpu_other_pct:.0f}%, of it "
            f"{worst.cpu_steal_pct:.0f}% stolen by the hypervisor): their figures are disturbed; rerun when the "
            "machine is quiet"
        )
    slow_plain = [
        r for r in runs if r.scenario == "plain" and r.cpu_mitmdump_pct < 80 and not (r.cpu_other_pct > OTHER_LOAD_PCT)
    ]
    if slow_plain:
        out.append(
            f"plain mitmdump used < 80% of a core in {len(slow_plain)} quiet run(s): the client or the servers may "
            "have limited throughput (ratios then understate the addon's cost)"
        )
    for n, row in summary.items():
        total = sum(row[k] for k in ("cpu_mitmdump_pct", "cpu_upstreams_pct", "cpu_client_pct"))
        if not math.isnan(total) and total > 0.9 * 100 * (os.cpu_count() or 1):
            out.append(f"{n}: the machine was saturated ({total:.0f}% CPU over {os.cpu_count()} cores)")
    for n, row in summary.items():
        if row["addon_compare"] or row["addon_compare_pending"]:
            out.append(
                f"{n}: shadow_compare_total by result (all rounds): {counts(row['addon_compare'])}; "
                f"shadow_compare_pending after the settle time: {row['addon_compare_pending']}"
            )
    if any(c.result == "PASS*" for c in checks):
        out.append(
            "PASS*: delivery >= 99.9% but < 100%: a healthy shadow should get every copy; check the addon's "
            "shadow_dropped_total before accepting it"
        )
    return out
