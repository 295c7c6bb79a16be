"""The replay case: `mitmshadow replay` of a large capture (a HAR or a flow file) against a fast shadow, timed,
with the memory of the replay and the processes it starts sampled from /proc."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import resource
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchkit import speedfit
from benchkit.answers import BODY, CONTENT_TYPE
from benchkit.harness import ADDON_SRC, package
from benchkit.procs import HOST, ROOT, log, spawn, stop
from benchkit.procstats import descendants, read_status
from benchkit.report import Check, fmt, publish, table
from benchkit.scenarios import MAPPINGS_YAML
from benchkit.speed import SpeedProbe
from benchkit.upstreams import start_upstreams

REPLAY_ENTRIES = 100_000
REPLAY_SECONDS = 30.0  # the targets (docs/benchmark.md, "Scale")
REPLAY_MIB = 300.0

REPLAY_MAPPINGS = MAPPINGS_YAML  # the benchmark's own: / to prod-svc, copied whole to shadow-svc


def har_entry(i: int) -> dict[str, Any]:
    """One recorded exchange as browsers write it: a GET with a few headers, production's answer (the same JSON
    document the healthy shadow gives, so every pair matches)."""
    started = 1_700_000_000 + i / 1000
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)) + f".{int(started * 1000) % 1000:03d}Z"
    return {
        "startedDateTime": stamp,
        "time": 1.5,
        "request": {
            "method": "GET",
            "url": f"http://shop.example/api/items/{i}?view=full",
            "httpVersion": "HTTP/1.1",
            "headers": [
                {"name": "Host", "value": "shop.example"},
                {"name": "User-Agent", "value": "bench/1.0"},
                {"name": "Accept", "value": "application/json"},
            ],
            "queryString": [{"name": "view", "value": "full"}],
            "cookies": [],
            "headersSize": -1,
            "bodySize": 0,
        },
        "response": {
            "status": 200,
            "statusText": "OK",
            "httpVersion": "HTTP/1.1",
            "headers": [
                {"name": "Content-Type", "value": CONTENT_TYPE},
                {"name": "Content-Length", "value": str(len(BODY))},
            ],
            "cookies": [],
            "content": {"size": len(BODY), "mimeType": CONTENT_TYPE, "text": BODY.decode()},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": len(BODY),
        },
        "cache": {},
        "timings": {"send": 0.1, "wait": 1.3, "receive": 0.1},
    }


def write_har(path: Path, entries: int) -> None:
    """A HAR of `entries` exchanges, written entry by entry (the file is never whole in memory)."""
    with open(path, "w") as f:
        f.write('{"log": {"version": "1.2", "creator": {"name": "benchkit", "version": "1"}, "entries": [\n')
        for i in range(entries):
            f.write((",\n" if i else "") + json.dumps(har_entry(i)))
        f.write("\n]}}\n")


def write_flows(path: Path, entries: int) -> None:
    """The same exchanges as a mitmproxy flow file (what `mitmdump -w` writes)."""
    from mitmproxy import io

    from shadow_addon import recorded  # the flows mitmproxy's HAR reader makes, in a fraction of its time

    with open(path, "wb") as f:
        w = io.FlowWriter(f)
        for i in range(entries):
            w.add(recorded.har_flow(har_entry(i)))


@dataclass(slots=True)
class ReplayRun:
    capture: str  # har or flows
    entries: int
    capture_mib: float
    exit_code: int = -1
    wall_s: float = 0.0
    cpu_s: float = 0.0  # utime + stime of the replay and every process it started (`--jobs`)
    peak_rss_mib: float = 0.0  # VmHWM, summed over the replay's processes (each one's peak: an upper bound)
    speed: float = math.nan  # the speed probe's mean over the run (docs/benchmark.md, "CPU speed")
    shadow_received: int = 0
    output: tuple[str, ...] = ()
    package: str = ""  # "base": --baseline's package, else the one measured

    @property
    def complete(self) -> bool:
        """Whether the replay exited 0 with every entry copied and judged."""
        return self.exit_code == 0 and self.shadow_received == self.entries == judged(self.output)


def tail(text: str) -> Iterator[str]:
    yield from [ln for ln in text.splitlines() if ln.strip()][-8:]


def judged(output: Iterable[str]) -> int:
    """The pairs the replay's report counts as compared (`compared   match:N noise:M ...`), over its Mappings."""
    return sum(int(n) for ln in output if ln.split()[:1] == ["compared"] for n in re.findall(r":(\d+)", ln))


async def replay_once(
    capture: Path,
    kind: str,
    entries: int,
    shadow_port: int,
    tmp: Path,
    ups: Any,
    env: dict[str, str],
    probe: SpeedProbe | None = None,
    package: str = "",
) -> ReplayRun:
    run = ReplayRun(kind, entries, capture.stat().st_size / 2**20, package=package)
    cmd = [
        str(ROOT / ".venv" / "bin" / "python"),
        "-m",
        "shadow_addon.cli",
        "replay",
        str(capture),
        "--mappings",
        str(tmp / "replay-mappings.yaml"),
        "--service",
        f"shadow-svc={HOST}:{shadow_port}",
    ]
    before = await ups.stats()
    out_path = tmp / f"replay-{kind}{'@' + package if package else ''}.log"
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the replay's, once it is waited for, with its own children
    t0 = time.monotonic()
    with open(out_path, "wb") as out:
        proc = await spawn(
            f"mitmshadow replay {kind}", cmd, None, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env
        )
    hwm: dict[int, int] = {}
    try:
        for _ in range(int(3600 / 0.2)):  # bounded: an hour
            for pid in descendants(proc.pid):
                st = read_status(pid)
                if st is not None:
                    hwm[pid] = max(hwm.get(pid, 0), st[1])
            try:
                await asyncio.wait_for(proc.wait(), 0.2)
                break
            except TimeoutError:
                continue
    finally:
        await stop(proc)
    run.wall_s = time.monotonic() - t0
    if probe is not None:
        run.speed = probe.mean(t0, t0 + run.wall_s)
    run.exit_code = proc.returncode if proc.returncode is not None else -1
    after_usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    run.cpu_s = sum(getattr(after_usage, f) - getattr(usage, f) for f in ("ru_utime", "ru_stime"))
    run.peak_rss_mib = sum(hwm.values()) / 1024
    after = await ups.stats()
    run.shadow_received = after["healthy"]["requests"] - before["healthy"]["requests"]
    run.output = tuple(tail(out_path.read_text(errors="replace")))
    return run


async def replay_bench(args: argparse.Namespace) -> int:
    import tempfile

    entries = args.replay_entries
    runs: list[ReplayRun] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="shadow-replay-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "replay-mappings.yaml").write_text(REPLAY_MAPPINGS)
        # The addon as it is now: every run replays with the same code even while the working tree changes.
        sources = {"": Path(args.addon_dir) if args.addon_dir else ADDON_SRC}
        if args.baseline:  # replayed in the same rounds, alternating with the measured package
            sources["base"] = Path(args.baseline)
        envs = {}
        for name, src in sources.items():
            snapshot = package(args, src, tmp / (name or "addon"))
            log(f"addon snapshot {snapshot.rev} ({src})")
            envs[name] = snapshot.env
        captures = {"har": tmp / "capture.har", "flows": tmp / "capture.mitm"}
        t = time.monotonic()
        write_har(captures["har"], entries)
        write_flows(captures["flows"], entries)
        log(f"captures of {entries} entries written in {time.monotonic() - t:.1f} s")
        ups = await start_upstreams(args.upstreams, tmp)
        # Not pinned (the replay uses every CPU): the probe times its work in its own CPU time, so what it reads
        # is how fast the host runs that hour, which moves a replay's wall time by +-25 %.
        probe = await SpeedProbe.start(set())
        try:
            packages = list(envs)
            for rnd in range(1, args.rounds + 1):
                for kind in ("har", "flows") if rnd % 2 else ("flows", "har"):
                    for pkg in packages if rnd % 2 else packages[::-1]:
                        port = ups.ports["healthy"]
                        r = await replay_once(captures[kind], kind, entries, port, tmp, ups, envs[pkg], probe, pkg)
                        runs.append(r)
                        log(
                            f"[round {rnd}/{args.rounds}] replay {kind + ('@' + pkg if pkg else ''):<10} "
                            f"{r.wall_s:6.1f} s  cpu {r.cpu_s:6.1f} s  peak {r.peak_rss_mib:6.1f} MiB  "
                            f"shadow got {r.shadow_received}  exit {r.exit_code}  speed {r.speed:.2f}"
                        )
        finally:
            await probe.close()
            await ups.close()
    return report(args, runs, time.monotonic() - t0)


def over_base(runs: Sequence[ReplayRun], kind: str) -> list[Check]:
    """The measured package over --baseline's, for one capture: wall and CPU time fitted to the CPU speed
    (`speedfit`), and the range of the rounds' ratios (each measured run over the baseline's of its round; a round
    in which either failed is left out)."""
    mine = [r for r in runs if r.capture == kind and not r.package]  # one a round each, in order
    base = [r for r in runs if r.capture == kind and r.package == "base"]
    rounds = [(a, b) for a, b in zip(mine, base, strict=False) if a.exit_code == 0 == b.exit_code]
    checks = []
    for figure in ("wall_s", "cpu_s"):
        got = speedfit.fit(*([(r.speed, getattr(r, figure)) for r in rs if r.exit_code == 0] for rs in (mine, base)))
        ratios = [getattr(a, figure) / getattr(b, figure) for a, b in rounds]
        shown = got.text() if got is not None else "-"
        if ratios:
            shown += f"; rounds {min(ratios):.3f}..{max(ratios):.3f}"
        checks.append(Check(f"replay {kind}: {figure.removesuffix('_s')} time over the baseline", shown, "", "info"))
    return checks


def report(args: argparse.Namespace, runs: list[ReplayRun], elapsed: float) -> int:
    rows = [
        [
            r.capture + ("@" + r.package if r.package else ""),
            str(r.entries),
            fmt(r.capture_mib, ".1f"),
            fmt(r.wall_s, ".1f"),
            fmt(r.speed, ".2f"),
            fmt(r.wall_s * r.speed, ".1f"),
            fmt(r.cpu_s, ".1f"),
            fmt(r.peak_rss_mib, ".1f"),
            str(r.shadow_received),
            str(r.exit_code),
        ]
        for r in runs
    ]
    headers = ["capture", "entries", "MiB", "wall s", "cpu speed", "wall s @speed 1", "cpu s", "peak RSS MiB"]
    headers += ["shadow got", "exit"]
    body = ["", f"mitmshadow replay: {args.rounds} round(s), upstreams {args.upstreams}", "", table(headers, rows)]
    checks: list[Check] = []
    for kind in ("har", "flows"):
        rs = [r for r in runs if r.capture == kind and not r.package]
        if not rs:
            continue
        worst_wall = max(r.wall_s for r in rs)
        worst_rss = max(r.peak_rss_mib for r in rs)
        ok = all(r.complete for r in rs)
        name = f"replay {kind}: every entry copied and judged, exit 0"
        checks.append(Check(name, str(ok), "True", "PASS" if ok else "FAIL", 0))
        res = "PASS" if worst_wall <= REPLAY_SECONDS else "FAIL"
        checks.append(Check(f"replay {kind}: wall time", f"{worst_wall:.1f} s", f"<= {REPLAY_SECONDS:g} s", res, 0))
        scaled = [r.wall_s * r.speed for r in rs]  # nan where the probe had too few samples: shown as "-"
        shown = fmt(math.nan if any(map(math.isnan, scaled)) else max(scaled), ".1f")
        target = f"<= {REPLAY_SECONDS:g} s"
        checks.append(Check(f"replay {kind}: wall time at CPU speed 1", f"{shown} s", target, "info"))
        res = "PASS" if worst_rss <= REPLAY_MIB else "FAIL"
        checks.append(Check(f"replay {kind}: peak RSS", f"{worst_rss:.1f} MiB", f"<= {REPLAY_MIB:g} MiB", res, 0))
        if args.baseline:
            checks += over_base(runs, kind)
    notes = [f"{r.capture}: {ln}" for r in runs if r.exit_code != 0 for ln in r.output]
    result: dict[str, Any] = {
        "config": {
            "rounds": args.rounds,
            "entries": args.replay_entries,
            "upstreams": args.upstreams,
            "baseline": args.baseline,
        },
        "json_path": str(Path(args.json) if args.json else ROOT / "bench-results-replay.json"),
        "runs": [asdict(r) for r in runs],
        "meta": {"cpus": os.cpu_count(), "elapsed_s": elapsed, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
    }
    return publish(result, body, checks, notes)
