"""Micro-benchmark of how long one comparison holds the event loop, per kind of pair, at the default limits:
the whole work of a pair (building both replies from the bytes as sent, learning noise from production's,
comparing) through `Pairing`, as the addon runs it. Prints the median and the worst of 7 pairs per case, with
the default parse limit and with it raised to the body limit (what an unbounded parse would cost).

    .venv/bin/python scripts/bench_compare.py
"""

from __future__ import annotations

import gzip
import json
import statistics
import time
from collections.abc import Callable

from shadow_addon.budget import MemoryBudget
from shadow_addon.compare import BODY_LIMIT, CompareConfig, Comparison
from shadow_addon.compare import pairing as pairing_module
from shadow_addon.compare.reply import Reply
from shadow_addon.metrics import Metrics

JSON = [(b"content-type", b"application/json")]
RUNS = 7


def listing(n: int, tag: str) -> bytes:
    return json.dumps([{"id": i, "name": f"item {i} {tag}", "price": i * 1.5, "ok": True} for i in range(n)]).encode()


def nested(depth: int, leaf: int) -> bytes:
    return ('{"a":' * depth + str(leaf) + "}" * depth).encode()


def cases() -> dict[str, tuple[bytes, list[tuple[bytes, bytes]], bytes, list[tuple[bytes, bytes]]]]:
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
    }


def one(
    config: CompareConfig, prod: bytes, ph: list[tuple[bytes, bytes]], shadow: bytes, sh: list[tuple[bytes, bytes]]
) -> float:
    pr = pairing_module.Pairing(Metrics(), config, budget=MemoryBudget(256 << 20))
    pr.learner.noise("m").learn("path", ("a",) * 3)  # a learned noise path: covers is stepped on every node
    out: list[Comparison] = []
    t = time.perf_counter()
    pr.expect("k", "m", "GET /", {})
    pr.production("k", Reply.of(200, ph, prod, config.body_limit))
    pr.shadow("k", Reply.of(200, sh, shadow, config.body_limit), None, out.append)
    dt = time.perf_counter() - t
    assert out, "the pair did not complete"
    return dt * 1000


def main() -> None:
    configs: dict[str, Callable[[], CompareConfig]] = {
        "default limits": lambda: CompareConfig(loop_share=1.0),
        "parse up to the body limit": lambda: CompareConfig(parse_limit=BODY_LIMIT, loop_share=1.0),
    }
    print(f"{'case':45} " + " ".join(f"{k:>28}" for k in configs))
    print(f"{'':45} " + " ".join(f"{'median / worst ms':>28}" for _ in configs))
    for name, (p, ph, s, sh) in cases().items():
        cells = []
        for make in configs.values():
            times = [one(make(), p, ph, s, sh) for _ in range(RUNS)]
            cells.append(f"{statistics.median(times):12.1f} / {max(times):8.1f}")
        print(f"{name:45} " + " ".join(f"{c:>28}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
