"""`mitmshadow replay --jobs N`: a capture replayed by N processes at once, each playing its part of the requests
(`replayshards`). This process starts them, marks each one that ends, and exits as the first one does: that one
reports for all of them and decides the verdict. The others' output is shown only when they fail.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .replayshards import gone, make_progress, started

MAX_AUTO = 4  # processes `--jobs auto` starts at most
AUTO_MIN_MIB = 16  # a smaller capture is replayed by one process (starting another costs more than it saves)
WATCH = 0.05  # s between looks at the processes
GRACE = 10.0  # s the others get to end once the first one has
TAIL = 40  # lines of a failed process's output shown


def jobs_arg(text: str) -> str | int:
    """`auto` or a number of processes (at least 1)."""
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected auto or a number of processes (1 or more), got {text!r}")
    return n


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def jobs_for(jobs: str | int, capture: str, speed: float) -> int:
    """How many processes replay the capture: as asked, or for `auto` one per CPU (at most MAX_AUTO) for a capture
    of AUTO_MIN_MIB or more replayed at once. A paced replay (`--speed`) takes the recording's time whatever the
    processes: one."""
    if speed > 0:
        return 1
    if jobs != "auto":
        return int(jobs)
    try:
        large = os.path.getsize(capture) >= AUTO_MIN_MIB * 2**20
    except OSError:
        large = False
    return min(usable_cpus(), MAX_AUTO) if large else 1


def _package_env() -> dict[str, str]:
    """This environment, with the directory holding this package first on the path the processes import from."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def run(argv: Sequence[str], jobs: int) -> int:
    """Replay with `jobs` processes, each given `argv` and its part; the first one's exit code."""
    with tempfile.TemporaryDirectory(prefix="mitmshadow-replay-") as d:
        procs: list[subprocess.Popen[bytes]] = []
        logs: list[Path | None] = []
        env = _package_env()
        make_progress(d, jobs)
        try:
            for k in range(jobs):
                cmd = [sys.executable, "-m", "shadow_addon.cli", "replay", *argv, "--shard", f"{k}/{jobs}"]
                cmd += ["--shard-dir", d]
                log = Path(d, f"output-{k}.log") if k else None
                logs.append(log)
                with open(log, "wb") if log is not None else contextlib.nullcontext() as out:
                    procs.append(
                        subprocess.Popen(
                            cmd,
                            stdin=subprocess.DEVNULL,
                            stdout=out,
                            stderr=subprocess.STDOUT if out else None,
                            env=env,
                        )
                    )
            codes = _watch(procs, d)
            played = started(d, jobs)
        except KeyboardInterrupt:  # the processes got it too (the terminal's process group): they stop as mitmdump does
            return 130
        finally:
            for p in procs:
                _stop(p)
        _explain(codes, played, logs)
        return codes[0] if codes[0] is not None else 2


def _explain(codes: list[int | None], played: list[bool], logs: list[Path | None]) -> None:
    """What the parts after the first that failed printed (the first one's output is the terminal's already)."""
    jobs = len(codes)
    for k, (code, log) in enumerate(zip(codes, logs, strict=True)):
        if not k or code == 0 or log is None:
            continue
        if codes[0] != 0 and not played[0] and not played[k]:
            # Neither read the capture: the same arguments and files failed the same way in both, and the first
            # part's output says why.
            print(f"mitmshadow replay: part {k + 1} of {jobs} failed before reading the capture too", file=sys.stderr)
        else:
            _show(log, f"part {k + 1} of {jobs}", code)


def _watch(procs: list[subprocess.Popen[bytes]], directory: str) -> list[int | None]:
    """Wait for the processes, marking each that ends (`replayshards.gone`), so nobody waits on it; once the first
    has ended, the others get GRACE seconds."""
    codes: list[int | None] = [None] * len(procs)
    first_done: float | None = None
    while any(c is None for c in codes):
        for k, p in enumerate(procs):
            if codes[k] is None and (c := p.poll()) is not None:
                codes[k] = c
                Path(gone(directory, k)).touch()
        if codes[0] is not None:
            first_done = first_done if first_done is not None else time.monotonic()
            if time.monotonic() - first_done > GRACE:
                break
        time.sleep(WATCH)
    return codes


def _stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(GRACE)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(GRACE)


def _show(log: Path, name: str, code: int | None) -> None:
    lines = log.read_text(errors="replace").splitlines()[-TAIL:]
    print(f"mitmshadow replay: {name} exited with {code}:", file=sys.stderr)
    for line in lines:
        print(f"  {line}", file=sys.stderr)
