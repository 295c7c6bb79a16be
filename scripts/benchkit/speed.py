"""The speed of mitmdump's CPU over time (a probe on that CPU), and the CPU placement that gives mitmdump a CPU of
its own shared only with the probe. Why: docs/benchmark.md, "CPU speed"."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import statistics
import subprocess
import sys
import time

from benchkit.procs import module_cmd, spawn, stop

SPEED_INTERVAL = 0.1  # s between probe samples
SPEED_WORK = 10_000  # loop iterations per sample (~1 ms: ~1 % of the CPU it shares with mitmdump)


def _speed_work() -> int:
    s = 0
    for i in range(SPEED_WORK):
        s += i * i
    return s


def speed_probe() -> None:
    """(subprocess side) Every SPEED_INTERVAL, time a fixed piece of pure-Python work in this thread's CPU time and
    print ``MONOTONIC SPEED`` (work per CPU millisecond); until stdin closes or the process is stopped."""
    os.set_blocking(sys.stdin.fileno(), False)
    while True:
        with contextlib.suppress(BlockingIOError):
            if sys.stdin.buffer.read(1) == b"":
                return
        c = time.thread_time()
        _speed_work()
        dt = time.thread_time() - c
        if dt > 0:
            print(f"{time.monotonic():.3f} {1e-3 / dt:.4f}", flush=True)
        time.sleep(SPEED_INTERVAL)


def cpu_plan() -> tuple[set[int], set[int]] | None:
    """(mitmdump's CPU, every other process's CPUs) when this machine has a CPU to give mitmdump alone."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    return ({cpus[-1]}, set(cpus[:-1])) if len(cpus) >= 2 else None


def place_processes() -> tuple[set[int] | None, str]:
    """Keep this process, and so every child it starts from now on, off the CPU that mitmdump will have alone;
    returns that CPU (None on one CPU) and a description for the report."""
    plan = cpu_plan()
    if plan is None:
        return None, "one CPU: no speed probe (throughput is compared as measured)"
    mitm, others = plan
    os.sched_setaffinity(0, others)
    return mitm, f"mitmdump and the speed probe on CPU {min(mitm)}; client and servers on {sorted(others)}"


class SpeedProbe:
    """The speed of mitmdump's CPU over time, sampled by the probe child on that CPU: a window's throughput
    divided by the probe's mean speed in that window is comparable across windows (docs/benchmark.md)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.samples: list[tuple[float, float]] = []
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, cpus: set[int]) -> SpeedProbe:
        proc = await spawn(
            "speed probe",
            module_cmd("benchkit.speed"),
            cpus=cpus,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            with contextlib.suppress(ValueError):
                t, v = line.split()
                self.samples.append((float(t), float(v)))

    def mean(self, lo: float, hi: float) -> float:
        """Mean speed of the samples taken between two time.monotonic() values (nan without one)."""
        inside = [v for t, v in self.samples if lo < t <= hi]
        return statistics.fmean(inside) if len(inside) >= 3 else math.nan

    async def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        await stop(self.proc)
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        speed_probe()
