"""Where the addon's time goes in a loaded mitmdump: the wall time of each of the Shadow addon's hooks, of the
copy's step and of its shadow connection's callbacks, timed inside a real mitmdump under `wrk -c10` with a healthy
nginx shadow (the benchmark's `healthy` scenario), per production request, beside mitmdump's CPU time per request
over the same window.

The hooks' cost measured alone (`scripts/bench_handoff.py`) runs the same code over and over with warm caches;
in mitmdump, between two requests, mitmproxy's own work runs, and the same hooks take about twice as long. This
measures them where they run. The timings include the system calls made inside them (the copy's `send` on
loopback, which also delivers the segment), which mitmdump's CPU time from /proc may count only in part.
`--addon-dir`: another shadow_addon package (repeatable), measured in turn, e.g. an older release's for a
before/after. The instrumented copy of each package wraps the methods at start; its cost (two clock reads a
wrapped call) is in the figures.

    .venv/bin/python scripts/bench_insitu.py [--seconds 8] [--connections 10] [--addon-dir DIR ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import types

_SCRIPTS = str(pathlib.Path(__file__).resolve().parent)
sys.path.insert(0, _SCRIPTS)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_SCRIPTS, os.environ.get("PYTHONPATH", "")) if p)  # servers
from benchkit.harness import ADDON_SRC, Setup, find_mitmdump, mitmdump_cmd, package  # noqa: E402
from benchkit.load import wrk_load  # noqa: E402
from benchkit.procs import free_port, spawn, stop, wait_answer, wait_port  # noqa: E402
from benchkit.procstats import CpuSnap, cpu_figures, cpu_snap  # noqa: E402
from benchkit.scenarios import SCENARIOS, write_mapping_set  # noqa: E402
from benchkit.speed import place_processes  # noqa: E402
from benchkit.summary import OTHER_LOAD_PCT  # noqa: E402
from benchkit.upstreams import start_upstreams  # noqa: E402

# What is timed: (module of shadow_addon, attribute path, label, outer). An outer call is counted only when no other
# outer call is under way (the addon's own time, summed without overlap); an inner one (label indented) is counted
# inside them too, to split them up.
HOOKS = ("requestheaders", "request", "responseheaders", "response", "error")
HOOKS += ("next_layer", "server_connect", "server_connected", "server_disconnected")
TIMED: tuple[tuple[str, str, str, bool], ...] = (
    *(("shadow", f"Shadow.{n}", f"hook: {n}", True) for n in HOOKS),
    ("shadow", "Shadow._copy", "step: the copy, after production's request (Shadow._copy)", True),
    *(
        ("connection", f"H1Conn.{n}", f"shadow connection: {n}", True)
        for n in ("get_buffer", "buffer_updated", "connection_lost", "_timeout")
    ),
    *(("production", f"Marks.{n}", f"marks: {n}", True) for n in ("stamp_sent", "stamp_head_step")),
    ("shadow", "Shadow.route_of", "  routing (Shadow.route_of)", False),
    ("production", "adopt_headers", "  Envoy's connection-manager headers (production.adopt_headers)", False),
    ("production", "apply_route", "  re-routing production (production.apply_route)", False),
    ("production", "record", "  production's metrics (production.record)", False),
    ("copies", "make_copy", "  making the copy (copies.make_copy)", False),
    ("sender", "Sender.submit", "  handing it to the sender (Sender.submit)", False),
    ("connection", "H1Conn.send", "    writing it (H1Conn.send)", False),
    ("sender", "Sender.answered", "  its answer's outcome (Sender.answered)", False),
)

# The entry script of the instrumented copy: the package's own Shadow addon, with TIMED wrapped; the timings are
# dropped at SIGUSR1 (the end of the warm-up) and written to $INSITU_OUT at exit.
ENTRY = """
import atexit, collections, functools, importlib, json, os, signal, sys, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from shadow_addon.shadow import Shadow

ACC = collections.defaultdict(lambda: [0, 0])
DEPTH = [0]
clock = time.perf_counter_ns


def wrap(module, path, label, outer):
    owner = importlib.import_module("shadow_addon." + module)
    *parents, name = path.split(".")
    for p in parents:
        owner = getattr(owner, p)
    f = getattr(owner, name, None)
    if f is None:
        return  # not in this release

    @functools.wraps(f)
    def timed(*a, **k):
        if outer and DEPTH[0]:
            return f(*a, **k)
        DEPTH[0] += outer
        t = clock()
        try:
            return f(*a, **k)
        finally:
            e = ACC[label]
            e[0] += clock() - t
            e[1] += 1
            DEPTH[0] -= outer

    setattr(owner, name, timed)


for timed in TIMED:
    wrap(*timed)


def reset(*_):
    ACC.clear()


def dump():
    with open(os.environ["INSITU_OUT"], "w") as fh:
        json.dump(dict(ACC), fh)


signal.signal(signal.SIGUSR1, reset)
atexit.register(dump)
addons = [Shadow()]
"""


def entry() -> str:
    return f"TIMED = {TIMED!r}\n{ENTRY}"


async def measure(s: Setup, label: str, seconds: int, connections: int) -> dict[str, list[int]]:
    """One loaded mitmdump with the instrumented copy; the timings and the window's CPU time, by label."""
    scn = SCENARIOS["healthy"]
    port = free_port()
    out = s.tmp / f"insitu-{label}.json"
    cmd = mitmdump_cmd(s, scn, port, None)
    env = dict(s.package.env, INSITU_OUT=str(out))
    log = s.tmp / f"mitmdump-{label}.log"
    with open(log, "wb") as logf:
        proc = await spawn("mitmdump", cmd, s.mitm_cpus, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env)
    snaps: list[CpuSnap] = []

    def mark() -> None:
        if not snaps:
            os.kill(proc.pid, signal.SIGUSR1)  # the warm-up's timings are dropped
        snaps.append(cpu_snap(proc.pid, s.ups.pids))

    try:
        await wait_port(port, proc, "mitmdump")
        await wait_answer(port, proc, "mitmdump")
        assert s.wrk is not None
        await wrk_load(s.wrk, port, connections, 2.0, float(seconds), mark)
    finally:
        await stop(proc)
    if not out.exists():
        raise RuntimeError(f"no timings from mitmdump: {log.read_text(errors='replace')[-1500:]}")
    acc: dict[str, list[int]] = json.loads(out.read_text())
    window = types.SimpleNamespace(requests=acc.get("hook: requestheaders", [0, 0])[1])
    cpu_figures(window, snaps[0], snaps[1])
    acc["cpu"] = [round(getattr(window, "cpu_us_per_request", 0.0) * window.requests * 1e3), 1]
    acc["other"] = [round(window.cpu_other_pct), 1]
    if not math.isnan(window.cpu_steal_pct):
        acc["steal"] = [round(window.cpu_steal_pct), 1]
    return acc


def report(label: str, acc: dict[str, list[int]]) -> None:
    n = acc.get("hook: requestheaders", [0, 0])[1]  # routed requests (the measured window's, almost)
    if not n:
        print(f"{label}: no request measured")
        return
    cpu = acc.pop("cpu")[0] / n / 1e3
    other, steal = acc.pop("other", [0])[0], acc.pop("steal", [0])[0]
    outer = sum(ns for k, (ns, _) in acc.items() if not k.startswith(" "))
    print(
        f"\n{label}: {n} requests; mitmdump's CPU {cpu:.0f} us a request; other CPU on the machine {other} % of a "
        f"core; stolen by the hypervisor {steal} %"
    )
    if other > OTHER_LOAD_PCT:
        print(f"  disturbed: over {OTHER_LOAD_PCT:g} % of a core ran outside the benchmark; rerun when it is quiet")
    print(f"{'':66} {'us/request':>10} {'calls/request':>13}")
    order = sorted(acc, key=lambda k: (k.startswith(" "), -acc[k][0]))
    for k in [k for k in order if not k.startswith(" ")] + [k for k in order if k.startswith(" ")]:
        ns, calls = acc[k]
        print(f"{k:66} {ns / n / 1e3:10.1f} {calls / n:13.2f}")
    share = outer / n / 1e3 / cpu
    print(f"{'the addon, all of the above unindented':66} {outer / n / 1e3:10.1f}   ({share:.1%} of the CPU)")


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=8, help="measured seconds of load (after 2 s of warm-up)")
    p.add_argument("--connections", type=int, default=10)
    p.add_argument("--addon-dir", action="append", default=[], help="a shadow_addon package to measure (repeatable)")
    args = p.parse_args()
    args.addon_option = []
    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("needs wrk on PATH (Debian: apt-get install wrk)")
    packages = [pathlib.Path(d) for d in args.addon_dir] or [ADDON_SRC]
    mitm_cpus, placement = place_processes()
    print(placement)
    with tempfile.TemporaryDirectory(prefix="shadow-insitu-") as tmpdir:
        tmp = pathlib.Path(tmpdir)
        write_mapping_set(tmp, SCENARIOS["healthy"].mappings)
        ups = await start_upstreams("auto", tmp)
        try:
            for i, pkg in enumerate(packages):
                snapshot = package(args, pkg, tmp / f"addon{i}")
                (snapshot.addon / "shadow_addon" / "addon.py").write_text(entry())
                s = Setup(args, ups, find_mitmdump(), wrk, tmp, snapshot, mitm_cpus=mitm_cpus)
                report(str(pkg), await measure(s, f"p{i}", args.seconds, args.connections))
        finally:
            await ups.close()


if __name__ == "__main__":
    asyncio.run(main())
