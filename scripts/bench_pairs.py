"""Micro-benchmark of comparison's cost per pair on a stream of small pairs, the common case: the benchmark's own
answer from production and from the shadow (every pair a match, each request a new one), through `Pairing` as the
addon drives it, in CPU time of the thread that runs it. `live`: each pair expected, production's reply and the
shadow's answer given, judged as it completes. `replay`: as `mitmshadow replay` does, the pairs judged at the end
in the capture's order (`compare.ordered`). The shadow's answer comes as the sender gives it (its body hashed as
read); no network.

With `--baseline DIR` the same batches run in a second shadow_addon package too, in two child processes, batch by
batch in turns, and the report gives this package's time per pair over the baseline's (median and range of the
batches' ratios): two packages measured minutes apart differ more on this machine than a change does.

    .venv/bin/python scripts/bench_pairs.py [--pairs 3000] [--batches 15] [--mode replay,live] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import sys
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from benchkit import turns  # noqa: E402
from benchkit.answers import BODY, CONTENT_TYPE  # noqa: E402 - the benchmark's own answer

MODES = ("replay", "live")
SHADOW_FIELDS = [  # what nginx, the benchmark's healthy shadow, answers with
    (b"Server", b"nginx/1.22.1"),
    (b"Date", b"Thu, 03 Dec 2026 15:00:00 GMT"),
    (b"Content-Type", CONTENT_TYPE.encode()),
    (b"Content-Length", b"%d" % len(BODY)),
    (b"Connection", b"keep-alive"),
]


def flows(n: int) -> list[Any]:
    """`n` recorded exchanges, each a GET of its own path answered with the benchmark's JSON."""
    from mitmproxy import http
    from mitmproxy.test import tflow

    out = []
    for i in range(n):
        f = tflow.tflow(resp=True)
        f.request.path = f"/api/items/{i}?view=full"
        f.request.headers = http.Headers(host="shop.example", user_agent="bench/1.0", accept="application/json")
        f.response = http.Response.make(200, BODY, {"Content-Type": CONTENT_TYPE, "Content-Length": str(len(BODY))})
        out.append(f)
    return out


def batch(mode: str, recorded: list[Any]) -> float:
    """CPU seconds of this thread for one batch of pairs, from a new `Pairing`."""
    from shadow_addon.compare.config import CompareConfig
    from shadow_addon.compare.ordered import CaptureOrder
    from shadow_addon.compare.pairing import Pairing
    from shadow_addon.copyrequest import Outcome
    from shadow_addon.httpsyntax import FieldView
    from shadow_addon.metrics import Metrics

    try:
        from shadow_addon.compare.endpoints import naming_fields
    except ImportError:  # a package from before the pairs named later kept only the fields that name them
        naming_fields = tuple  # type: ignore[assignment]

    p = Pairing(Metrics(), CompareConfig())
    p.offline()  # every pair compared: no share of a loop to keep
    order = CaptureOrder(None) if mode == "replay" else None
    if order is not None:
        p.in_capture_order(order)
    t = time.thread_time()
    for i, f in enumerate(recorded):
        req = f.request
        summary = {"method": req.method, "path": req.path, "host": "shop.example", "size": 0}
        if order is not None:
            naming = (req.method, req.path, naming_fields(req.headers.fields))
            p.expect(f.id, "shadow", "", summary, False, i + 1, naming)
        else:
            p.expect(f.id, "shadow", p.namer.name(req.method, req.path, FieldView(req.headers.fields)), summary)
        p.production_answered(f, "shadow")
        digest = hashlib.sha256()
        digest.update(BODY)  # the sender hashes a kept body as it reads it
        out = Outcome(status=200, headers=SHADOW_FIELDS, body=BODY, body_size=len(BODY), body_sha256=digest.hexdigest())
        p.shadow_answered(f.id, out, None)
    if order is not None:
        p.order = None
        order.finish()
        p.judge_in_order(lambda replies: order.compared(replies), sampled=order.sampled > 0)
        order.close()
    dt = time.thread_time() - t
    matched = p.metrics.compared.get(("shadow", "match"), 0)
    if matched != len(recorded):
        raise SystemExit(f"bench_pairs: {matched} of {len(recorded)} pairs matched ({p.metrics.compared})")
    return dt


def serve(mode: str, pairs: int) -> None:
    """(child side) One batch per line read from stdin; prints its microseconds per pair."""
    recorded = flows(pairs)
    batch(mode, recorded)  # warm-up: imports, first allocations
    for _ in sys.stdin:
        print(f"{batch(mode, recorded) / pairs * 1e6:.3f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=3000, help="pairs per batch")
    ap.add_argument("--batches", type=int, default=15, help="batches per package and mode")
    ap.add_argument("--mode", default=",".join(MODES), help="replay, live or both (comma-separated)")
    ap.add_argument("--baseline", default="", help="a shadow_addon package to compare with (its directory)")
    ap.add_argument("--serve", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve, args.pairs)
        return 0
    packages = turns.packages(args.baseline)
    for mode in [m for m in args.mode.split(",") if m]:
        if mode not in MODES:
            raise SystemExit(f"bench_pairs: unknown mode {mode!r} (replay, live)")
        child_args = ["--serve", mode, "--pairs", str(args.pairs)]
        times = turns.measure(__file__, packages, child_args, args.batches, "bench_pairs")
        print(turns.line(f"{mode:7}", "us/pair", times), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
