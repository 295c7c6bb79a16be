"""Two scenarios compared at equal CPU speed over several `scripts/bench --json` files at once: each file keeps its
own level (the host's hour), one speed exponent and one ratio are fitted over all their quiet runs
(`benchkit.speedfit.pooled`). What one run's interval does not show is the spread between runs; this is how the
pooled figures in docs/benchmark.md were made.

    .venv/bin/python scripts/bench_fit.py healthy plain run1.json run2.json ...

With `--replay har` (or `flows`), the files are `scripts/bench --replay --json` ones, and what is fitted is the
replay's own time at CPU speed 1 over all their rounds (`benchkit.speedfit.at_speed_one`): it has no reference
scenario, and its time follows the speed more than in proportion.

    .venv/bin/python scripts/bench_fit.py --replay har replay1.json replay2.json ...
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from benchkit.replaycase import ReplayRun  # noqa: E402
from benchkit.speedfit import at_speed_one, pooled  # noqa: E402
from benchkit.summary import FITTED, quiet  # noqa: E402


def points(doc: dict, a: str, b: str, key: str) -> list[tuple[float, float, bool]]:
    """(speed, figure, is a) of the quiet runs of scenarios a and b in one file's JSON."""
    out = []
    for r in doc.get("runs", []):
        speed, value = r.get("core_speed"), r.get(key)
        if r.get("scenario") in (a, b) and value is not None and quiet(speed, r.get("cpu_other_pct")):
            out.append((float(speed), float(value), r["scenario"] == a))
    return out


def replay_points(doc: dict, capture: str, key: str) -> list[tuple[float, float]]:
    """(speed, figure) of one `scripts/bench --replay --json` file's rounds of `capture` (har, flows) that replayed
    it all (`ReplayRun.complete`, as its report checks), the measured package's, not a --baseline's."""
    runs = [ReplayRun(**r) for r in doc.get("runs", [])]
    return [(r.speed, getattr(r, key)) for r in runs if r.capture == capture and not r.package and r.complete]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replay", choices=("har", "flows"), help="instead: a replay's time at CPU speed 1 (FILES only)")
    ap.add_argument("names", nargs="+", help="A B FILES: scenario A over B (e.g. healthy plain); with --replay: FILES")
    args = ap.parse_args(argv)
    if args.replay:
        docs = [json.loads(pathlib.Path(f).read_text()) for f in args.names]
        print(f"replay {args.replay}, fitted to CPU speed over the rounds of {len(docs)} files")
        for key, label in (("wall_s", "wall time"), ("cpu_s", "cpu time")):
            level = at_speed_one([p for d in docs for p in replay_points(d, args.replay, key)])
            print(f"  {label:16s} {level.text(' s') if level is not None else 'too few rounds, or all at one speed'}")
        return 0
    if len(args.names) < 3:
        ap.error("expected A B FILES")
    a, b, files = args.names[0], args.names[1], [pathlib.Path(f) for f in args.names[2:]]
    docs = [json.loads(f.read_text()) for f in files]
    print(f"{a} over {b}, fitted to CPU speed over {len(docs)} files (quiet runs)")
    for key, label in FITTED:
        f = pooled([points(d, a, b, key) for d in docs])
        print(f"  {label:16s} {f.text() if f is not None else 'too few runs of both scenarios'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
