"""Batches of a micro-benchmark in turns: one child process per shadow_addon package, each running the same batch
when told, the packages taking turns batch by batch (and turns about who goes first). Two packages measured minutes
apart differ more on this machine than a change does; measured in turns, a batch's ratio reads the change.

A benchmark passes its own path and the arguments that make it a child (`--serve ...`): the child reads a line per
batch from stdin, runs the batch and prints its figure (a float) on a line of its own."""

from __future__ import annotations

import os
import pathlib
import statistics
import subprocess
import sys
from collections.abc import Sequence


def packages(baseline: str) -> list[str]:
    """The packages to measure, as `child` takes them: this checkout's, then the baseline's (a shadow_addon
    directory; "": none)."""
    here = str(pathlib.Path(__file__).resolve().parents[2])
    return [here] + ([str(pathlib.Path(baseline).resolve().parent)] if baseline else [])


def child(script: str, package: str, args: Sequence[str]) -> subprocess.Popen[str]:
    """`script` with `args`, the parent directory of a shadow_addon package first on its path ("": this one), on
    the machine's last CPU: every package's batches run on the same one (this machine's CPUs differ in speed by
    the minute), one batch at a time."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package, env.get("PYTHONPATH", "")) if p)
    cpus = sorted(os.sched_getaffinity(0))
    return subprocess.Popen(
        [sys.executable, script, *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpus[-1]}),
    )


def measure(script: str, packages: Sequence[str], args: Sequence[str], batches: int, name: str) -> list[list[float]]:
    """Each batch's figure, per package, the packages taking turns. `name`: the benchmark's, in its errors."""
    procs = [child(script, p, args) for p in packages]
    figures: list[list[float]] = [[] for _ in packages]
    try:
        for b in range(batches):
            order = list(range(len(procs)))
            if b % 2:
                order.reverse()
            for k in order:
                proc = procs[k]
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
                if not line:
                    raise SystemExit(f"{name}: the batch of {packages[k] or 'this package'} failed ({' '.join(args)})")
                figures[k].append(float(line))
    finally:
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(30)
    return figures


def line(label: str, unit: str, figures: list[list[float]]) -> str:
    """`label`: this package's median, and with a baseline its median and this over it (median and range of the
    batches' ratios)."""
    out = f"{label} this package {statistics.median(figures[0]):7.1f} {unit} (median of {len(figures[0])})"
    if len(figures) > 1:
        ratios = [a / b for a, b in zip(figures[0], figures[1], strict=True)]
        out += (
            f", baseline {statistics.median(figures[1]):7.1f}; this over the baseline "
            f"{statistics.median(ratios):.3f} [{min(ratios):.3f}..{max(ratios):.3f}]"
        )
    return out
