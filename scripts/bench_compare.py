"""Micro-benchmark of how long one comparison holds the event loop, per kind of pair, at the default limits:
the whole work of a pair (building both replies from the bytes as sent, learning noise from production's,
comparing, recording the result) through `Pairing`, as the addon runs it, in CPU time of the thread that runs it
(the event loop's). Prints the median and the worst of `--runs` pairs per case, with the default parse limit and
with it raised to the body limit (what an unbounded parse would cost). The last cases are `scripts/bench`'s own
pairs (`bigjson`, `wide`: production's small JSON answer against the shadow's, byte for byte as its servers send
them). `--package DIR`: measure another shadow_addon package (its parent directory on sys.path first).

    .venv/bin/python scripts/bench_compare.py [--runs 15] [--only wide,bigjson] [--package /tmp/before]
"""

from __future__ import annotations

import argparse
import gzip
import json
import pathlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from benchkit import answers  # noqa: E402 - the benchmark's own answers

JSON = [(b"content-type", b"application/json")]
Case = tuple[bytes, list[tuple[bytes, bytes]], bytes, list[tuple[bytes, bytes]]]


def listing(n: int, tag: str) -> bytes:
    return json.dumps([{"id": i, "name": f"item {i} {tag}", "price": i * 1.5, "ok": True} for i in range(n)]).encode()


def nested(depth: int, leaf: int) -> bytes:
    return ('{"a":' * depth + str(leaf) + "}" * depth).encode()


def sent(response: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The body and header fields of one of the benchmark servers' answers (`benchkit.answers.response`)."""
    head, _, body = response.partition(b"\r\n\r\n")
    fields = [line.split(b": ", 1) for line in head.split(b"\r\n")[1:]]
    return body, [(k, v) for k, v in fields]


def cases() -> dict[str, Case]:
    big = listing(12_000, "x")
    gz_prod = listing(10, "p")
    wide = json.dumps({f"k{i}": "v" * 50_000 for i in range(20)}).encode()
    wide2 = json.dumps({f"k{i}": "w" * 50_000 for i in range(20)}).encode()
    gz_body = listing(13_000, "g")[:1_040_000]
    return {
        "~90 KB list, every element differs": (listing(1000, "a"), JSON, listing(1000, "b"), JSON),
        "small JSON vs ~1 MB JSON": (gz_prod, JSON, big, JSON),
        "gzip JSON decoding to ~1,040,000 B": (
            gz_prod,
            JSON,
            gzip.compress(gz_body),
            [*JSON, (b"content-encoding", b"gzip")],
        ),
        "JSON nested 4,000 deep, leaves differ": (nested(4000, 1), JSON, nested(4000, 2), JSON),
        "JSON nested 120 deep, leaves differ": (nested(120, 1), JSON, nested(120, 2), JSON),
        "20 keys of 50 KB each, values differ": (wide, JSON, wide2, JSON),
        "identical 1 MB JSON": (big, JSON, big, JSON),
        "bench bigjson: small JSON vs ~1 MB JSON": (*sent(answers.response(answers.BODY)), *sent(answers.big_json())),
        "bench wide: small JSON vs 20 keys of 50 KB": (
            *sent(answers.response(answers.BODY)),
            *sent(answers.wide_answer("k")),
        ),
    }


def one(config: Any, prod: bytes, ph: list[tuple[bytes, bytes]], shadow: bytes, sh: list[tuple[bytes, bytes]]) -> float:
    from shadow_addon.budget import MemoryBudget
    from shadow_addon.compare import Comparison
    from shadow_addon.compare import pairing as pairing_module
    from shadow_addon.compare.reply import Reply
    from shadow_addon.metrics import Metrics

    pr = pairing_module.Pairing(Metrics(), config, budget=MemoryBudget(256 << 20))
    pr.learner.noise("m").learn("path", ("a",) * 3)  # a learned noise path: covers is stepped on every node
    out: list[Comparison] = []
    t = time.thread_time()
    pr.expect("k", "m", "GET /", {})
    pr.production("k", Reply.of(200, ph, prod, config.body_limit))
    pr.shadow("k", Reply.of(200, sh, shadow, config.body_limit), None, out.append)
    dt = time.thread_time() - t
    assert out, "the pair did not complete"
    return dt * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15, help="pairs per case and limit (median and worst shown)")
    ap.add_argument("--only", default="", help="cases whose name contains one of these words, comma-separated")
    ap.add_argument("--package", default="", help="directory holding another shadow_addon package to measure")
    args = ap.parse_args()
    if args.package:
        sys.path.insert(0, str(pathlib.Path(args.package).resolve()))
    from shadow_addon.compare import BODY_LIMIT, CompareConfig

    configs: dict[str, Callable[[], CompareConfig]] = {
        "default limits": lambda: CompareConfig(loop_share=1.0),
        "parse up to the body limit": lambda: CompareConfig(parse_limit=BODY_LIMIT, loop_share=1.0),
    }
    words = [w for w in args.only.split(",") if w]
    print(f"{'case':45} " + " ".join(f"{k:>28}" for k in configs))
    print(f"{'':45} " + " ".join(f"{'CPU ms median / worst':>28}" for _ in configs))
    for name, (p, ph, s, sh) in cases().items():
        if words and not any(w in name for w in words):
            continue
        cells = []
        for make in configs.values():
            times = [one(make(), p, ph, s, sh) for _ in range(args.runs)]
            cells.append(f"{statistics.median(times):12.2f} / {max(times):8.2f}")
        print(f"{name:45} " + " ".join(f"{c:>28}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
