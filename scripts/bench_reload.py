"""How long the event loop stalls while 10,000 Mappings are reloaded, and how long they take to load.

The Mapping files are watched, read and built in a worker thread and installed on the loop, as in mitmdump (a
`--set` or `shadow.reload` goes through the same worker, `MappingFiles.request`). A 1 ms ticker on the loop records
the longest gap between its turns: over a quiet window first, then while each reload runs (a changed file read,
checked, built, compared with the old table, installed, frozen, and the old table freed in the worker). Python's
collector pauses every thread (the longest collection is shown beside the gaps, and the install, the part run on
the loop).

    .venv/bin/python scripts/bench_reload.py [--mappings 10000] [--reloads 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit.scenarios import write_mapping_set  # noqa: E402

from shadow_addon import mappingfiles  # noqa: E402
from shadow_addon.addresses import ServiceOverride, parse_service_override  # noqa: E402
from shadow_addon.metrics import Metrics  # noqa: E402

QUIET_S = 3.0
RELOAD_TIMEOUT_S = 120.0


class Collector:
    """The longest garbage collection since the last reset (any generation; nearly always a gen-2 one)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.generation = -1  # of the longest
        self._t = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        elif (took := time.perf_counter() - self._t) > self.longest:
            self.longest, self.generation = took, info["generation"]

    def reset(self) -> None:
        self.longest, self.generation = 0.0, -1

    def __str__(self) -> str:
        return f"longest GC {self.longest * 1000:.1f} ms" + (f", gen {self.generation}" if self.generation >= 0 else "")


class Installs:
    """The longest `_install` (the part of a reload that runs on the loop)."""

    def __init__(self, files: mappingfiles.MappingFiles) -> None:
        self.longest = 0.0
        inner = files._install

        def timed(*args: object, **kw: object) -> bool:
            t = time.perf_counter()
            try:
                return inner(*args, **kw)  # type: ignore[arg-type]
            finally:
                self.longest = max(self.longest, time.perf_counter() - t)

        files._install = timed  # type: ignore[method-assign]


async def longest_gap(until: asyncio.Future[None], limit_s: float) -> float:
    loop = asyncio.get_running_loop()
    worst, last, end = 0.0, loop.time(), loop.time() + limit_s
    while not until.done() and loop.time() < end:
        await asyncio.sleep(0.001)
        now = loop.time()
        worst, last = max(worst, now - last), now
    return worst


async def main(n: int, reloads: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    name = "prefix10k" if n == 10_000 else f"prefix{n}"
    with tempfile.TemporaryDirectory(prefix="shadow-reload-") as tmp:
        root = Path(tmp)
        write_mapping_set(root, name)
        files = mappingfiles.MappingFiles(Metrics())
        t, c = time.perf_counter(), time.process_time()
        # The benchmark's services point at loopback, as its mitmdumps' mapping_services do: no name is looked up.
        overrides = tuple(
            ServiceOverride(*parse_service_override(f"{svc}=127.0.0.1:9")) for svc in ("prod-svc", "shadow-svc")
        )
        source = mappingfiles.Source(str(root / name), overrides=overrides)
        assert files.load(source)
        print(f"{n} Mappings loaded on start-up: {time.perf_counter() - t:.2f} s ({time.process_time() - c:.2f} s CPU)")
        gcs = Collector()
        installs = Installs(files)
        files.start()
        loop = asyncio.get_running_loop()
        quiet = await longest_gap(loop.create_future(), QUIET_S)
        print(f"quiet {QUIET_S:g} s: longest loop gap {quiet * 1000:.1f} ms ({gcs})")
        target = root / name / "services-000.yaml"
        for i in range(reloads):
            gcs.reset()
            installs.longest = 0.0
            before = files.table
            target.write_text(target.read_text().replace("prefix: '/svc-0/", f"prefix: '/svc-0-{i}/", 1))
            done: asyncio.Future[None] = loop.create_future()

            async def installed(old: object = before, fut: asyncio.Future[None] = done) -> None:
                while files.table is old:
                    await asyncio.sleep(0.01)
                fut.set_result(None)

            t = time.perf_counter()
            waiter = loop.create_task(installed())
            gap = await longest_gap(done, RELOAD_TIMEOUT_S)
            waiter.cancel()
            took = time.perf_counter() - t
            print(
                f"reload {i + 1}: installed after {took:.2f} s; longest loop gap {gap * 1000:.1f} ms "
                f"({gcs}, install on the loop {installs.longest * 1000:.1f} ms)"
            )
        files.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mappings", type=int, default=10_000, choices=(10, 10_000))
    p.add_argument("--reloads", type=int, default=3)
    a = p.parse_args()
    asyncio.run(main(a.mappings, a.reloads))
