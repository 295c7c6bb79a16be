"""The `scripts/bench` command line: interleaved rounds (default) or the soak."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from benchkit.answers import BOMB_MIB
from benchkit.procs import kill_leftovers, log
from benchkit.replaycase import REPLAY_ENTRIES, replay_bench
from benchkit.rounds import bench
from benchkit.scenarios import SCENARIOS, select_scenarios, with_baseline
from benchkit.soak import SOAK_CYCLE, clear_soak_flag, soak


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Plain mitmdump vs mitmdump + shadow addon (healthy, bad and hostile shadows), interleaved, on "
        "loopback; or a soak. Method and targets: docs/benchmark.md.",
        epilog=f"scenarios: {', '.join(f'{s.name} ({s.description})' for s in SCENARIOS.values())}. "
        "Exit status: 0 all checks pass, 1 a check failed, 2 usage error.",
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds of all scenarios (default 3)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per run (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds of load before each (default 1)")
    p.add_argument("--settle", type=float, default=1.0, help="max seconds to wait for shadow stragglers (default 1)")
    p.add_argument("--connections", type=int, default=10, help="client keep-alive connections (default 10)")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: 1 round, 2 s per measurement (--soak: 2 min of 10 s phases)"
    )
    p.add_argument("--only", metavar="A,B", help="scenarios to run (their reference scenarios are added)")
    p.add_argument(
        "--json",
        metavar="PATH",
        help="where to write the figures (default: bench-results.json, soak: bench-results-soak.json)",
    )
    p.add_argument(
        "--addon-option",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="extra --set for the addon runs, e.g. shadow_timeout=1 (repeatable)",
    )
    p.add_argument(
        "--bomb-mib",
        type=int,
        default=BOMB_MIB,
        metavar="N",
        help=f"MiB the bomb and bombgz answers inflate to (default {BOMB_MIB}: the gzip one then stays under the "
        "addon's 1 MiB compare limit; the addon decodes each in memory, so mind the machine's RAM)",
    )
    p.add_argument(
        "--addon-dir",
        metavar="PATH",
        help="the shadow_addon package to measure (default: this tree's), e.g. an older release's for a before/after",
    )
    p.add_argument(
        "--baseline",
        metavar="PATH",
        help="a second shadow_addon package (e.g. `git archive REV shadow_addon | tar -x -C /tmp/base`, then "
        "/tmp/base/shadow_addon): every addon scenario also runs with it, as NAME@base, in the same rounds, and the "
        "report gives the measured package over it round by round",
    )
    p.add_argument("--client", choices=("auto", "asyncio", "wrk"), default="auto", help="load generator")
    p.add_argument("--upstreams", choices=("auto", "asyncio", "nginx"), default="auto", help="upstream servers")
    p.add_argument(
        "--soak",
        action="store_true",
        help="soak instead: one mitmdump under continuous load while the shadow cycles healthy > slow > blackhole > "
        "down (default JSON: bench-results-soak.json; with --quick: 2 minutes of 10 s phases)",
    )
    p.add_argument(
        "--replay",
        action="store_true",
        help="the replay case instead: `mitmshadow replay` of a HAR and of a flow file of --replay-entries entries "
        "against a fast shadow, timed, with its peak memory (default JSON: bench-results-replay.json)",
    )
    p.add_argument(
        "--replay-entries",
        type=int,
        default=None,
        metavar="N",
        help=f"entries of the replayed captures (default {REPLAY_ENTRIES}; --quick: {REPLAY_ENTRIES // 10})",
    )
    p.add_argument("--soak-minutes", type=float, metavar="M", help="length of the soak (default 10)")
    p.add_argument("--phase-seconds", type=float, metavar="S", help="seconds per shadow phase in the soak (default 30)")
    args = p.parse_args(argv)
    if args.soak:
        if args.only:
            p.error("--only does not apply to --soak")
        if args.client == "wrk":
            p.error("--soak uses the asyncio client (it counts completions per phase), not wrk")
        default_minutes, default_phase = (2.0, 10.0) if args.quick else (10.0, 30.0)
        args.soak_minutes = default_minutes if args.soak_minutes is None else args.soak_minutes
        args.phase_seconds = default_phase if args.phase_seconds is None else args.phase_seconds
        if args.phase_seconds < 2 or args.soak_minutes * 60 / args.phase_seconds < len(SOAK_CYCLE) - 0.5:
            p.error(f"--phase-seconds must be >= 2 and the soak at least {len(SOAK_CYCLE)} phases long")
    elif args.soak_minutes is not None or args.phase_seconds is not None:
        p.error("--soak-minutes and --phase-seconds need --soak")
    if args.replay_entries is not None and not args.replay:
        p.error("--replay-entries needs --replay")
    if args.baseline and args.soak:
        p.error("--baseline is for the interleaved rounds and --replay (not --soak: use --addon-dir there)")
    if args.replay and (args.soak or args.only):
        p.error("--replay runs on its own (not with --soak or --only)")
    if args.replay:
        default_entries = REPLAY_ENTRIES // 10 if args.quick else REPLAY_ENTRIES
        args.replay_entries = default_entries if args.replay_entries is None else args.replay_entries
        if args.replay_entries < 1:
            p.error("--replay-entries must be >= 1")
    if args.quick:
        args.rounds, args.duration = 1, 2.0
    if args.rounds < 1 or args.duration <= 0 or args.connections < 1 or args.warmup < 0 or args.settle < 0:
        p.error("--rounds and --connections must be >= 1, --duration > 0, --warmup and --settle >= 0")
    if not 16 <= args.bomb_mib <= 65536:
        p.error("--bomb-mib must be between 16 and 65536")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.soak:
        job = soak(args)
    elif args.replay:
        job = replay_bench(args)
    else:
        try:
            names, added = select_scenarios(args.only)
        except ValueError as e:
            print(f"scripts/bench: {e}", file=sys.stderr)
            return 2
        if added:
            log(f"--only: added reference scenario(s) {', '.join(added)} (ratios are taken against them)")
        job = bench(args, with_baseline(names) if args.baseline else names)
    try:
        return asyncio.run(job)
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted; stopped every process started")
        return 130
    finally:
        kill_leftovers()
        clear_soak_flag()
