"""Micro-benchmark of how long decoding a body for comparison holds the event loop, at the default 1 MiB cap.

1. Decodings that stay on the loop (`decode.off_loop` is False): the median of 5 per body.
2. A `Pairing` given fresh brotli bombs (a 4 MiB window each): the longest gap of a 1 ms ticker on the loop,
   with the bombs decoded in the worker thread as the addon does, then decoded in place.

    .venv/bin/python scripts/bench_decode.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

import brotli

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bombs import br_bomb, deflate_bomb, gzip_bomb  # noqa: E402

from shadow_addon.compare import decode  # noqa: E402
from shadow_addon.compare import pairing as pairing_module  # noqa: E402
from shadow_addon.compare.config import CompareConfig  # noqa: E402
from shadow_addon.compare.reply import Reply  # noqa: E402
from shadow_addon.metrics import Metrics  # noqa: E402
from shadow_addon.sender import Outcome  # noqa: E402

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

LIMIT = 1 << 20
BOMBS = 20


def brotli_zeros(lgwin: int, mib: int) -> bytes:
    c = brotli.Compressor(quality=5, lgwin=lgwin)
    return b"".join(c.process(bytes(1 << 20)) for _ in range(mib)) + c.finish()


def on_the_loop() -> None:
    json_like = b"".join(b'{"i":%d,"v":"x"},' % i for i in range(60000))[:LIMIT]
    bodies = {
        "gzip bomb, 1 GiB": (gzip_bomb(1 << 30), "gzip"),
        "deflate bomb, 1 GiB": (deflate_bomb(1 << 30), "deflate"),
        "zstd bomb, 256 MiB": (zstd.compress(bytes(256 << 20)), "zstd"),
        "brotli bomb, 1 MiB window, 256 MiB": (brotli_zeros(20, 256), "br"),
        "brotli, 1 MiB of JSON, 4 MiB window": (brotli.compress(json_like, lgwin=22), "br"),
    }
    print("decodings on the loop, median of 5 (ms):")
    for name, (body, coding) in bodies.items():
        assert not decode.off_loop(body, coding, LIMIT), name
        times = []
        for _ in range(5):
            decode._refused.clear()  # each run decodes, as a new body would
            t = time.perf_counter()
            decode.decode_capped(body, coding, LIMIT)
            times.append((time.perf_counter() - t) * 1000)
        print(f"  {name:40} {statistics.median(times):6.1f}")


async def longest_stall(in_place: bool) -> tuple[float, int]:
    off_loop = pairing_module.off_loop
    if in_place:
        pairing_module.off_loop = lambda *_: False  # type: ignore[assignment]
    try:
        pr = pairing_module.Pairing(Metrics(), CompareConfig())
        gaps: list[float] = []
        stop = False

        async def ticker() -> None:
            last = time.perf_counter()
            while not stop:
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        task = asyncio.create_task(ticker())
        headers = [(b"content-type", b"application/json"), (b"content-encoding", b"br")]
        done: list[object] = []
        salt = b"\0" * (BOMBS + 1) if in_place else b""
        bombs = [br_bomb(1 << 30) + salt + b"\0" * (i + 1) for i in range(BOMBS)]  # each new to the memo
        for i, bomb in enumerate(bombs):
            pr.expect(str(i), "m", "GET /", {})
            pr.production(str(i), Reply.of(200, [(b"content-type", b"application/json")], b'{"a":1}'))
            out = Outcome(status=200, headers=headers, body=bomb, body_size=len(bomb))
            pr.shadow_answered(str(i), out, done.append)
            await asyncio.sleep(0.01)
        for _ in range(1000):  # <= 10 s
            if len(done) == BOMBS:
                break
            await asyncio.sleep(0.01)
        stop = True
        await task
        return max(gaps) * 1000, len(done)
    finally:
        pairing_module.off_loop = off_loop


def main() -> None:
    on_the_loop()
    print(f"{BOMBS} fresh 1 GiB brotli bombs through a Pairing, longest loop stall (ms):")
    for in_place in (False, True):
        stall, compared = asyncio.run(longest_stall(in_place))
        print(f"  {'decoded in place' if in_place else 'worker thread':20} {stall:6.1f}  ({compared} compared)")


if __name__ == "__main__":
    main()
