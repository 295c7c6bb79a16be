"""CPU time of the event loop per copy, with comparison on, against the benchmark's own upstream servers
(`benchkit.servers`, a child process, so their CPU is not counted): each copy is made and sent by the real
sender, the shadow's answer read on a kept-alive connection (kept and hashed while the comparison's share allows,
else read unkept to its last byte, as the addon reads it), production's answer (the benchmark's small JSON)
built and the pair compared, skipped or recorded, by `Pairing`. A closed loop of `--inflight` copies, `--copies`
per measurement, for each shadow upstream (`--shadows`, default healthy, wide, bigjson) and each comparison share
of the loop (`--shares`: 0 never compares, so it is the read alone; 0.05 is the default `shadow_compare_budget`;
1 compares every pair), in `--rounds` interleaved rounds; prints the median and the lowest CPU microseconds per
copy of this process (the loop's thread; nothing here uses another). `--package DIR`: measure another
shadow_addon package (its parent directory on sys.path first).

    .venv/bin/python scripts/bench_read.py [--rounds 5] [--copies 1000] [--shares 0,1] [--package /tmp/before]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import statistics
import sys
import time
from typing import Any

SCRIPTS = str(pathlib.Path(__file__).resolve().parent)
sys.path.insert(0, SCRIPTS)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (SCRIPTS, os.environ.get("PYTHONPATH", "")) if p)  # servers
from benchkit import answers  # noqa: E402
from benchkit.upstreams import ServerProcess  # noqa: E402

PRODUCTION = [(b"content-type", b"application/json"), (b"content-length", str(len(answers.BODY)).encode())]


async def measure(port: int, copies: int, share: float, inflight: int) -> float:
    """CPU microseconds per copy of `copies` copies to the server at `port`, `inflight` at a time."""
    from shadow_addon.budget import MemoryBudget
    from shadow_addon.compare import CompareConfig
    from shadow_addon.compare.pairing import Pairing
    from shadow_addon.compare.reply import Reply
    from shadow_addon.mappings import Address
    from shadow_addon.metrics import Metrics
    from shadow_addon.sender import Copy, Outcome, Sender

    config = CompareConfig(loop_share=share)
    metrics, budget = Metrics(), MemoryBudget(256 << 20)
    pairing = Pairing(metrics, config, budget=budget)
    address = Address("http", "127.0.0.1", port)
    fields = ((b"User-Agent", b"wrk"), (b"Accept", b"*/*"))
    sent = answered = 0
    total = 2 * copies  # the first half unmeasured: connections made, comparison's share in its steady state
    started = 0.0
    done = asyncio.Event()

    def submit() -> None:
        nonlocal sent
        key = f"k{sent}"
        sent += 1
        # As dispatch.submit: every answer read up to the compare limit, kept and hashed when compared.
        paired = pairing.expect(key, "m", "GET /bench", {"path": "/bench"})
        keep = config.body_limit if paired else 0
        c = Copy("m", "s", address, "GET", "/bench", "h-shadow", fields, b"", 10.0, keep_body=keep,
                 read_limit=config.body_limit, hash_body=paired, context=key)  # fmt: skip
        sender.submit(c)
        pairing.production(key, Reply.of(200, PRODUCTION, answers.BODY, config.body_limit))

    def on_result(c: Any, out: Outcome) -> None:
        nonlocal answered, started
        pairing.shadow_answered(str(c.context), out, None)
        answered += 1
        if answered == copies:
            started = time.process_time()
        if sent < total:
            submit()
        elif answered == total:
            done.set()

    def at_head(c: Any, status: int, length: int | None) -> tuple[int, bool] | None:
        return None if pairing.shadow_wanted(str(c.context), length) else (0, False)

    sender = Sender(metrics, budget=budget, on_result=on_result, at_head=at_head)
    for _ in range(min(inflight, total)):
        submit()
    try:
        await asyncio.wait_for(done.wait(), 600)
    finally:
        sender.close()
        pairing.close()
    return (time.process_time() - started) / copies * 1e6


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--copies", type=int, default=1000, help="copies per measurement")
    ap.add_argument("--inflight", type=int, default=10, help="copies in flight (the benchmark's connections)")
    ap.add_argument("--shares", default="0,1", help="comparison's shares of the loop, comma-separated")
    ap.add_argument("--shadows", default="healthy,wide,bigjson", help="benchkit.servers upstreams, comma-separated")
    ap.add_argument("--package", default="", help="directory holding another shadow_addon package to measure")
    args = ap.parse_args()
    if args.package:
        sys.path.insert(0, str(pathlib.Path(args.package).resolve()))
    shadows = tuple(args.shadows.split(","))
    shares = [float(s) for s in args.shares.split(",")]
    servers = await ServerProcess.start(shadows, 16)
    results: dict[tuple[str, float], list[float]] = {}
    try:
        for name in shadows:  # warm-up: connections, imports, allocator
            await measure(servers.ports[name], 200, shares[0], args.inflight)
        for r in range(args.rounds):
            order = [(n, s) for n in shadows for s in shares]
            for name, share in order if r % 2 == 0 else reversed(order):
                cpu = await measure(servers.ports[name], args.copies, share, args.inflight)
                results.setdefault((name, share), []).append(cpu)
    finally:
        await servers.close()
    print(f"{'shadow':10} {'share':>6} {'CPU us/copy median':>19} {'lowest':>8}")
    for (name, share), cpus in results.items():
        print(f"{name:10} {share:6g} {statistics.median(cpus):19.1f} {min(cpus):8.1f}")


if __name__ == "__main__":
    asyncio.run(main())
