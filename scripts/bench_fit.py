"""Two scenarios compared at equal CPU speed over several `scripts/bench --json` files at once: each file keeps its
own level (the host's hour), one speed exponent and one ratio are fitted over all their quiet runs
(`benchkit.speedfit.pooled`). What one run's interval does not show is the spread between runs; this is how the
pooled figures in docs/benchmark.md were made.

    .venv/bin/python scripts/bench_fit.py healthy plain run1.json run2.json ...
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from benchkit.speedfit import pooled  # noqa: E402
from benchkit.summary import FITTED, quiet  # noqa: E402


def points(doc: dict, a: str, b: str, key: str) -> list[tuple[float, float, bool]]:
    """(speed, figure, is a) of the quiet runs of scenarios a and b in one file's JSON."""
    out = []
    for r in doc.get("runs", []):
        speed, value = r.get("core_speed"), r.get(key)
        if r.get("scenario") in (a, b) and value is not None and quiet(speed, r.get("cpu_other_pct")):
            out.append((float(speed), float(value), r["scenario"] == a))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="the scenario measured, e.g. healthy (or NAME@base)")
    ap.add_argument("b", help="the one it is compared with, e.g. plain")
    ap.add_argument("files", nargs="+", type=pathlib.Path, help="scripts/bench --json files")
    args = ap.parse_args(argv)
    docs = [json.loads(f.read_text()) for f in args.files]
    print(f"{args.a} over {args.b}, fitted to CPU speed over {len(docs)} files (quiet runs)")
    for key, label in FITTED:
        f = pooled([points(d, args.a, args.b, key) for d in docs])
        print(f"  {label:16s} {f.text() if f is not None else 'too few runs of both scenarios'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
