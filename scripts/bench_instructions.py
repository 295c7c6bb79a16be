"""Instructions per request: mitmdump under valgrind's callgrind, its user-space instructions counted only while a
fixed number of requests (and their copies) run, per scenario, and each scenario's ratio to plain mitmdump.

Throughput on a shared 2-core machine moves by +-10 % between rounds (CPU speed, steal, the other processes); an
instruction count does not: the same scenario measured twice differs by under 0.1 %, whatever else runs. It is the
figure for small differences (a before/after of one change, the cost of the addon's hooks) and for "no
regression" across releases. What it leaves out: kernel time (the sockets' system calls; `scripts/bench`'s
CPU per request has it) and cache and branch behaviour; so it complements the throughput benchmark, it does not
replace it.

    .venv/bin/python scripts/bench_instructions.py [--only plain,routed,healthy] [--requests 500]
        [--addon-dir DIR ...]   # one column per package, e.g. an older release's for a before/after

Needs `valgrind` on PATH (Debian: `apt-get install valgrind`). Each measurement takes about a minute (mitmdump
starts under callgrind's instrumentation-off mode, then ~50x slower while counted). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

_SCRIPTS = str(pathlib.Path(__file__).resolve().parent)
sys.path.insert(0, _SCRIPTS)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_SCRIPTS, os.environ.get("PYTHONPATH", "")) if p)  # servers
from benchkit.harness import ADDON_SRC, Package, Setup, find_mitmdump, mitmdump_cmd, snapshot_addon  # noqa: E402
from benchkit.load import bench_request, exchange  # noqa: E402
from benchkit.procs import HOST, free_port, spawn, stop, wait_answer, wait_port  # noqa: E402
from benchkit.scenarios import SCENARIOS, write_mapping_set  # noqa: E402
from benchkit.upstreams import start_upstreams  # noqa: E402

WARMUP_PER_CONNECTION = 20  # requests per connection before counting: imports, caches, pools warmed
SETTLE_TIMEOUT = 30.0  # s for the copies of the counted requests to reach the shadow
START_TIMEOUT = 300.0  # s for mitmdump to listen under valgrind


@dataclass(slots=True)
class Count:
    scenario: str
    package: str
    requests: int
    instructions: int

    @property
    def per_request(self) -> float:
        return self.instructions / self.requests


async def _drive(port: int, connections: int, per_connection: int) -> int:
    """Keep-alive connections each sending `per_connection` requests in turn; the number answered 200."""
    request = bench_request(port)

    async def one() -> int:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 30)
        ok = 0
        try:
            for _ in range(per_connection):
                ok += await asyncio.wait_for(exchange(reader, writer, request), 30)
        finally:
            writer.close()
        return ok

    return sum(await asyncio.gather(*(one() for _ in range(connections))))


def _callgrind(*args: str) -> None:
    subprocess.run(
        ["callgrind_control", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60
    )


def _total(out: str) -> int:
    """The instructions of every dump of one run (the `totals:` line of each file callgrind wrote; its `summary:`
    line may read 0)."""
    total = 0
    for path in sorted(glob.glob(out + "*")):
        with open(path) as f:
            total += sum(int(line.split()[1]) for line in f if line.startswith("totals:"))
    return total


async def measure(s: Setup, scenario: str, package: str, requests: int, connections: int) -> Count:
    scn = SCENARIOS[scenario]
    port = free_port()
    admin = free_port() if scn.addon and s.package.admin else None
    safe = "".join(ch if ch.isalnum() else "_" for ch in package)
    out = str(s.tmp / f"callgrind-{safe}-{scenario}.out")
    cmd = mitmdump_cmd(s, scn, port, admin)
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *cmd]
    env = dict(s.package.env, PYTHONHASHSEED="0")  # the same dict and set orders every run
    log = s.tmp / f"mitmdump-{safe}-{scenario}.log"
    with open(log, "wb") as logf:
        proc = await spawn(
            f"mitmdump {scenario}", cmd, None, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        for _ in range(int(START_TIMEOUT / 15) + 1):  # wait_port gives up after 15 s; valgrind starts slower
            try:
                await wait_port(port, proc, "mitmdump")
                break
            except RuntimeError as e:
                if proc.returncode is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-1500:]
                    raise RuntimeError(f"{e}\ncommand: {' '.join(cmd)}\n{tail}") from None
        await wait_answer(port, proc, "mitmdump")
        per = max(1, requests // connections)
        await _drive(port, connections, WARMUP_PER_CONNECTION)
        before = await s.ups.stats()
        _callgrind("-i", "on", str(proc.pid))
        ok = await _drive(port, connections, per)
        if scn.shadow is not None:  # the copies' answers are part of a request's cost: wait for them
            want = before.get(scn.shadow, {}).get("requests", 0) + per * connections
            end = time.monotonic() + SETTLE_TIMEOUT
            while time.monotonic() < end and (await s.ups.stats()).get(scn.shadow, {}).get("requests", 0) < want:
                await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # the last answers read and counted
        _callgrind("-i", "off", str(proc.pid))
        _callgrind("-d", str(proc.pid))
        instructions = 0
        for _ in range(300):  # the dump is written when valgrind next looks at its commands: bounded, 30 s
            instructions = _total(out)
            if instructions:
                break
            await asyncio.sleep(0.1)
        if ok != per * connections:
            raise RuntimeError(f"{scenario}: {ok} of {per * connections} requests answered 200")
        return Count(scenario, package, per * connections, instructions)
    finally:
        await stop(proc)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="plain,routed,healthy", help="scenarios (plain is always measured)")
    p.add_argument("--requests", type=int, default=500, help="requests counted per measurement")
    p.add_argument("--connections", type=int, default=10)
    p.add_argument("--addon-dir", action="append", default=[], help="a shadow_addon package to measure (repeatable)")
    p.add_argument("--addon-option", action="append", default=[], help="extra --set KEY=VALUE for the addon runs")
    args = p.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        raise SystemExit("needs valgrind (Debian: apt-get install valgrind)")
    wanted = ["plain", *(w.strip() for w in args.only.split(",") if w.strip() and w.strip() != "plain")]
    unknown = [w for w in wanted if w not in SCENARIOS or SCENARIOS[w].grpc]
    if unknown:
        raise SystemExit(f"--only: not a scenario this measures: {', '.join(unknown)}")
    packages = [pathlib.Path(d) for d in args.addon_dir] or [ADDON_SRC]
    with tempfile.TemporaryDirectory(prefix="shadow-instr-") as tmpdir:
        tmp = pathlib.Path(tmpdir)
        for name in {SCENARIOS[w].mappings for w in wanted}:
            write_mapping_set(tmp, name)
        ups = await start_upstreams("asyncio", tmp)
        try:
            counts: list[Count] = []
            setups = []
            for i, pkg in enumerate(packages):
                addon = tmp / f"addon{i}"
                snapshot_addon(addon, pkg)
                env = dict(os.environ, PYTHONPATH=str(addon))
                setups.append((str(pkg), Setup(args, ups, find_mitmdump(), None, tmp, Package(addon, env, True))))
            for scenario in wanted:
                for label, s in setups if SCENARIOS[scenario].addon else [("-", setups[0][1])]:
                    c = await measure(s, scenario, label, args.requests, args.connections)
                    counts.append(c)
                    print(f"{scenario:10} {label:40} {c.per_request / 1e6:8.3f} M instructions/request", flush=True)
        finally:
            await ups.close()
    plain = next(c.per_request for c in counts if c.scenario == "plain")
    print(f"\n{'scenario':10} {'package':40} {'M instr/req':>11} {'vs plain':>9} {'over plain':>11}")
    for c in counts:
        over = c.per_request - plain
        print(
            f"{c.scenario:10} {c.package:40} {c.per_request / 1e6:11.3f} {c.per_request / plain:8.3f}x "
            f"{over / 1e3:+9.0f} k"
        )


if __name__ == "__main__":
    asyncio.run(main())
