"""Micro-benchmark of reading a capture as `mitmshadow replay` reads it (`capture.recorded_flows`): the replay
benchmark's own exchanges (`benchkit.replaycase`, `--entries` of them) as a HAR and as a flow file, in CPU time of
the thread that reads, per entry of the capture. `all`: every entry made a flow, as one process reads; `half`: half
of them, the others read only as far as their method and path, as each of two processes of a split replay reads
(`replay --jobs 2`; here the half is chosen by a hash of the path, not by `replayshards`). No network.

With `--baseline DIR` the same batches run in a second shadow_addon package too, the two taking turns batch by batch
(`benchkit.turns`), and the report gives this package's time per entry over the baseline's.

    .venv/bin/python scripts/bench_capture.py [--entries 20000] [--batches 9] [--kind har,flows] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time
import zlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from benchkit import turns  # noqa: E402
from benchkit.replaycase import write_flows, write_har  # noqa: E402

KINDS = ("har", "flows")
PARTS = ("all", "half")


def _half(line: tuple[bytes, bytes] | None) -> bool:
    return line is not None and zlib.crc32(line[1]) & 1 == 0


def batch(path: str, part: str) -> tuple[float, int]:
    """CPU seconds of this thread to read the capture at `path` once, and the flows made."""
    from shadow_addon import capture

    keep = _half if part == "half" else None
    t = time.thread_time()
    with open(path, "rb") as fh:
        n = sum(1 for _ in capture.recorded_flows(fh, keep=keep))
    return time.thread_time() - t, n


def serve(path: str, part: str, entries: int) -> None:
    """(child side) One batch per line read from stdin; prints its microseconds per entry of the capture."""
    batch(path, part)  # warm-up: imports, the file in the page cache
    for _ in sys.stdin:
        seconds, made = batch(path, part)
        if not (made == entries if part == "all" else 0 < made < entries):
            raise SystemExit(f"bench_capture: {made} flows made of {entries} entries ({part})")
        print(f"{seconds / entries * 1e6:.3f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=20000, help="entries of each capture")
    ap.add_argument("--batches", type=int, default=9, help="batches per package, capture and part")
    ap.add_argument("--kind", default=",".join(KINDS), help="har, flows or both (comma-separated)")
    ap.add_argument("--part", default=",".join(PARTS), help="all, half or both (comma-separated)")
    ap.add_argument("--baseline", default="", help="a shadow_addon package to compare with (its directory)")
    ap.add_argument("--serve", nargs=2, metavar=("CAPTURE", "PART"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve[0], args.serve[1], args.entries)
        return 0
    kinds, parts = [k for k in args.kind.split(",") if k], [p for p in args.part.split(",") if p]
    if bad := [k for k in kinds if k not in KINDS] + [p for p in parts if p not in PARTS]:
        raise SystemExit(f"bench_capture: unknown kind or part {bad[0]!r} (har, flows; all, half)")
    packages = turns.packages(args.baseline)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            path = pathlib.Path(tmp) / f"capture.{kind}"
            (write_har if kind == "har" else write_flows)(path, args.entries)
            for part in parts:
                child_args = ["--serve", str(path), part, "--entries", str(args.entries)]
                figures = turns.measure(__file__, packages, child_args, args.batches, "bench_capture")
                print(turns.line(f"{kind:5} {part:4}", "us/entry", figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
