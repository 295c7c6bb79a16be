"""The interleaved rounds: every selected scenario once per round (every other round in reverse order), each
figure a ratio against its reference in the same round; the summary and the report."""

from __future__ import annotations

import argparse
import math
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchkit.harness import max_inflight, prepared, run_meta, started
from benchkit.procs import ROOT, log
from benchkit.report import counts, fmt, publish, spread, table
from benchkit.runs import Run, measure
from benchkit.scenarios import scenario
from benchkit.servers import SERVERS
from benchkit.summary import FITTED, OVER_BASE, notes, summarise
from benchkit.upstreams import ORDINARY


def body(result: dict[str, Any], summary: dict[str, dict[str, Any]]) -> list[str]:
    """The report's header and tables (publish() adds the checks and notes)."""
    cfg = result["config"]
    out = [
        "",
        f"mitmproxy-shadow benchmark: {cfg['rounds']} round(s) x {cfg['duration']:g} s "
        f"(+{cfg['warmup']:g} s warm-up), {cfg['connections']} connections, loopback, {result['meta']['cpus']} CPUs",
        f"upstreams: {cfg['upstreams']}; client: {cfg['client']}; mitmdump {result['meta']['mitmproxy']}; "
        f"addon: snapshot of shadow_addon/ at start (sha256 {result['meta']['addon_sources_sha256']}, "
        f"git {result['meta']['git']}); medians over rounds, ratios: medians of per-round ratios vs the reference",
        f"placement: {cfg['placement']}; thr x @speed: throughput per unit of the speed probe's mean over the run",
        *([f"answers: {counts(cfg['answer_bytes'])} (bytes, head included)"] if cfg.get("answer_bytes") else []),
        "",
    ]
    rows = []
    for n, s in summary.items():
        rows.append(
            [
                n,
                s["reference"] or "-",
                fmt(s["rps"], ".0f"),
                fmt(s["p50_ms"], ".2f"),
                fmt(s["p99_ms"], ".2f"),
                fmt(s.get("throughput_ratio", math.nan), ".3f"),
                fmt(s["core_speed"], ".2f"),
                fmt(s.get("norm_throughput_ratio", math.nan), ".3f"),
                fmt(s.get("p50_ratio", math.nan), ".3f"),
                fmt(s.get("p99_ratio", math.nan), ".3f"),
                f"{s['shadow_received']}/{s['prod_received']}" if s["delivery"] is not None else "-",
                fmt(s["delivery"] * 100, ".2f") if s["delivery"] is not None else "-",
                str(s["errors"]),
                counts(s["addon_drops"]),
                counts(s["addon_compare"]),
            ]
        )
    headers = [
        "scenario",
        "vs",
        "req/s",
        "p50 ms",
        "p99 ms",
        "thr x",
        "cpu speed",
        "thr x @speed",
        "p50 x",
        "p99 x",
        "shadow/prod",
        "deliv %",
        "err",
        "addon drops",
        "compared",
    ]
    out.append(table(headers, rows, set(range(1, len(headers) - 2))))
    out.append("")
    rows = [
        [
            n,
            fmt(s["peak_rss_mib"], ".1f"),
            fmt(s["hwm_rss_mib"], ".1f"),
            fmt(s["rss_growth_mib"], "+.1f"),
            str(s["peak_fds"]),
            fmt(s["cpu_mitmdump_pct"], ".0f"),
            fmt(s["cpu_upstreams_pct"], ".0f"),
            fmt(s["cpu_client_pct"], ".0f"),
            fmt(s["cpu_other_pct"], ".0f"),
            fmt(s["cpu_us_per_request"], ".0f"),
            fmt(s.get("cpu_system_us_per_request", math.nan), ".0f"),
            fmt(s.get("cpu_per_request_ratio", math.nan), ".3f"),
            fmt(s["ready_s"], ".2f"),
            fmt(s["ready_cpu_s"], ".2f"),
        ]
        for n, s in summary.items()
    ]
    headers = [
        "scenario",
        "peak RSS MiB",
        "VmHWM MiB",
        "RSS growth",
        "peak fds",
        "cpu% mitm",
        "cpu% ups",
        "cpu% client",
        "cpu% other",
        "mitm cpu us/req",
        "of it system",
        "x ref",
        "ready s",
        "ready cpu s",
    ]
    out.append(table(headers, rows))
    over = {n: s["over_base"] for n, s in summary.items() if "over_base" in s}
    if over:
        out += [
            "",
            f"over the baseline (--baseline, sha256 {result['meta']['baseline_sources_sha256']}): medians of "
            "per-round ratios, NAME / NAME@base",
        ]
        rows = [
            [n, *(f"{o[label]:.3f}x{spread(o[label + '_per_round'])}" for _, label in OVER_BASE)]
            for n, o in over.items()
        ]
        out.append(table(["scenario", "throughput", "p50", "p99", "cpu/request"], rows, {1, 2, 3, 4}))
        rows = [
            [n, *(o["fitted"][lb].text() if lb in o["fitted"] else "-" for _, lb in FITTED)] for n, o in over.items()
        ]
        out += ["", "over the baseline, fitted to CPU speed (benchkit.speedfit), quiet runs"]
        out.append(table(["scenario", "throughput", "p50", "cpu/request"], rows, {1, 2, 3}))
    return out


async def bench(args: argparse.Namespace, names: list[str]) -> int:
    t0, load_start = started()
    wrk = shutil.which("wrk") if args.client in ("auto", "wrk") else None
    if args.client == "wrk" and not wrk:
        raise SystemExit("--client wrk: wrk is not on PATH")
    runs: list[Run] = []
    client = "wrk -t1" if wrk else "asyncio (benchkit, main process)"
    # The second server process: the hostile shadows and the comparison cases' own upstreams.
    own = {u for n in names for u in (scenario(n).shadow, scenario(n).production) if u in SERVERS}  # HTTP/1
    hostile = tuple(sorted(u for u in own if u not in ORDINARY))
    sets = tuple(sorted({scenario(n).mappings for n in names}))
    grpc = any(scenario(n).grpc for n in names)
    async with prepared(args, "shadow-bench-", wrk, hostile, sets, grpc) as setup:
        ups = setup.ups
        log(f"upstreams: {ups.kind}; client: {client}; scenarios: {', '.join(names)}")
        for rnd in range(1, args.rounds + 1):
            order = names if rnd % 2 else names[::-1]
            for n in order:
                r = await measure(rnd, scenario(n), setup)
                runs.append(r)
                deliv = f"shadow {r.shadow_received}/{r.prod_received}" if scenario(n).shadow else ""
                log(
                    f"[round {rnd}/{args.rounds}] {n:<9} {r.rps:8.0f} req/s  p50 {r.p50_ms:6.2f} ms  "
                    f"p99 {r.p99_ms:7.2f} ms  rss {r.peak_rss_mib:5.1f} MiB  fds {r.peak_fds:4d}  "
                    f"cpu mitm {r.cpu_mitmdump_pct:3.0f}% ups {r.cpu_upstreams_pct:3.0f}% "
                    f"client {r.cpu_client_pct:3.0f}% other {r.cpu_other_pct:3.0f}%  speed {r.core_speed:4.2f}  "
                    f"ready {r.ready_s:4.1f} s  {deliv}"
                )
    inflight = max_inflight(args.addon_option)
    summary, checks = summarise(runs, names, inflight)
    result: dict[str, Any] = {
        "meta": run_meta(setup, t0, load_start),
        "config": {
            "rounds": args.rounds,
            "duration": args.duration,
            "warmup": args.warmup,
            "settle": args.settle,
            "connections": args.connections,
            "scenarios": names,
            "addon_options": args.addon_option,
            "shadow_max_inflight": inflight,
            "upstreams": ups.kind,
            "client": client,
            "ports": ups.ports,
            "placement": setup.placement,
            "bomb_mib": args.bomb_mib if any(n.startswith("bomb") for n in names) else None,
            "answer_bytes": {n: b for n, b in ups.answer_bytes.items() if n in hostile},
        },
        "json_path": str(Path(args.json) if args.json else ROOT / "bench-results.json"),
        "summary": summary,
        "runs": [asdict(r) for r in runs],
    }
    found = notes(runs, summary, checks)
    if not wrk or ups.nginx is None:
        found.append(
            "client or upstreams in Python (wrk or nginx not on PATH): they share one CPU, so a shadow's server "
            "takes CPU from the client and ratios against plain understate production's throughput; the targets "
            "were set with wrk and nginx (Debian: apt-get install wrk nginx-light)"
        )
    return publish(result, body(result, summary), checks, found)
