"""What every measurement shares: the set-up (a temporary directory, the upstreams, a snapshot of the addon, the
CPU placement and the speed probe) and one mitmdump started, checked and always stopped."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit.procs import HOST, ROOT, free_port, spawn, stop, wait_answer, wait_port
from benchkit.procstats import cpu_seconds
from benchkit.scenarios import Scenario, mappings_path, write_mapping_set
from benchkit.speed import SpeedProbe, place_processes
from benchkit.upstreams import Upstreams, start_upstreams

ADDON_SRC = ROOT / "shadow_addon"
DEFAULT_MAX_INFLIGHT = 64  # the addon's shadow_max_inflight default


@dataclass(slots=True)
class Package:
    """A snapshot of a shadow_addon package and how mitmdump runs it."""

    addon: Path  # the directory holding the snapshot of shadow_addon/
    env: dict[str, str]  # mitmdump's environment: PYTHONPATH puts the snapshot first
    admin: bool  # the addon has shadow_admin: give each run its own port (the default one is fixed) and scrape it
    rev: str = ""  # hash of the snapshot's sources


@dataclass(slots=True)
class Setup:
    args: argparse.Namespace
    ups: Upstreams
    mitmdump: str
    wrk: str | None
    tmp: Path
    package: Package  # the shadow_addon measured
    baseline: Package | None = None  # --baseline's, for the NAME@base scenarios
    mitm_cpus: set[int] | None = None  # mitmdump's own CPU (place_processes), shared only with the probe
    probe: SpeedProbe | None = None
    placement: str = ""


def find_mitmdump() -> str:
    for c in (ROOT / ".venv" / "bin" / "mitmdump", Path(sys.executable).parent / "mitmdump"):
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("mitmdump")
    if not found:
        raise SystemExit("mitmdump not found (expected in .venv/bin; run scripts/bench, which sets up .venv)")
    return found


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "shadow_addon"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return rev + ("+dirty(shadow_addon)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def snapshot_addon(dest: Path, src: Path = ADDON_SRC) -> str:
    """Copy shadow_addon/ to dest/shadow_addon, so every run tests the same code even if the working tree
    changes during the benchmark (mitmdump runs with PYTHONPATH=dest). Returns a hash of the copied sources."""
    shutil.copytree(src, dest / "shadow_addon", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    h = hashlib.sha256()
    for f in sorted((dest / "shadow_addon").rglob("*.py")):
        h.update(f.relative_to(dest).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def addon_has_option(addon: Path, name: str) -> bool:
    """Whether the addon declares an option (the addon is being developed alongside this benchmark)."""
    for f in sorted((addon / "shadow_addon").rglob("*.py")):
        text = f.read_text(errors="replace")
        if f'"{name}"' in text and "add_option" in text:
            return True
    return False


def max_inflight(options: Sequence[str]) -> int:
    for opt in reversed(options):
        key, _, value = opt.partition("=")
        if key.strip() == "shadow_max_inflight":
            with contextlib.suppress(ValueError):
                return int(value)
    return DEFAULT_MAX_INFLIGHT


def package(args: argparse.Namespace, src: Path, dest: Path) -> Package:
    """Snapshot the shadow_addon package at `src` into `dest`."""
    rev = snapshot_addon(dest, src)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(dest), env.get("PYTHONPATH", "")) if p)
    admin = addon_has_option(dest, "shadow_admin") and not any(
        o.partition("=")[0].strip() == "shadow_admin" for o in args.addon_option
    )
    return Package(dest, env, admin, rev)


def make_setup(
    args: argparse.Namespace, ups: Upstreams, tmp: Path, wrk: str | None, mitm_cpus: set[int] | None, placement: str
) -> Setup:
    """Snapshot shadow_addon/ (and --baseline's) into tmp and describe how mitmdump runs."""
    measured = package(args, Path(args.addon_dir) if getattr(args, "addon_dir", None) else ADDON_SRC, tmp / "addon")
    base = getattr(args, "baseline", None)
    baseline = package(args, Path(base), tmp / "baseline") if base else None
    return Setup(args, ups, find_mitmdump(), wrk, tmp, measured, baseline, mitm_cpus, placement=placement)


def package_of(s: Setup, scn: Scenario) -> Package:
    if scn.baseline:
        assert s.baseline is not None, "a NAME@base scenario without --baseline"
        return s.baseline
    return s.package


@contextlib.asynccontextmanager
async def prepared(
    args: argparse.Namespace,
    prefix: str,
    wrk: str | None,
    hostile: tuple[str, ...] = (),
    mapping_sets: tuple[str, ...] = ("default",),
    grpc: bool = False,
) -> AsyncIterator[Setup]:
    """A temporary directory with the Mapping file, this process kept off mitmdump's CPU, the upstream servers
    (`hostile`: the hostile shadows to serve too; `grpc`: the gRPC ones), the addon snapshot and the speed probe;
    all stopped and removed on the way out."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmpdir:
        tmp = Path(tmpdir)
        for name in {"default", *mapping_sets}:
            write_mapping_set(tmp, name)
        mitm_cpus, placement = place_processes()
        ups = await start_upstreams(args.upstreams, tmp, hostile, args.bomb_mib, grpc)
        setup: Setup | None = None
        try:
            setup = make_setup(args, ups, tmp, wrk, mitm_cpus, placement)
            if mitm_cpus is not None:
                setup.probe = await SpeedProbe.start(mitm_cpus)
            yield setup
        finally:
            if setup is not None and setup.probe is not None:
                await setup.probe.close()
            await ups.close()


def started() -> tuple[float, tuple[float, float, float]]:
    """Mark the start of a benchmark: SIGTERM now cancels it as Ctrl-C does; the clock and the load average."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return time.monotonic(), os.getloadavg()


def run_meta(s: Setup, t0: float, load_start: tuple[float, float, float]) -> dict[str, Any]:
    """What the figures were measured on, for the JSON and the report's header."""
    try:
        from mitmproxy import version as mitm_version  # only for the report

        mitm = mitm_version.VERSION
    except ImportError:
        mitm = "unknown"
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": git_revision(),
        "addon_sources_sha256": s.package.rev,
        "baseline_sources_sha256": s.baseline.rev if s.baseline is not None else None,
        "python": platform.python_version(),
        "mitmproxy": mitm,
        "cpus": os.cpu_count(),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "elapsed_s": time.monotonic() - t0,
    }


def mitmdump_cmd(s: Setup, scn: Scenario, proxy_port: int, admin_port: int | None) -> list[str]:
    ports = s.ups.ports
    cmd = [s.mitmdump, "-q"]
    if scn.addon:
        cmd += ["-s", str(package_of(s, scn).addon / "shadow_addon" / "addon.py")]
    prod = ports[scn.production]
    cmd += ["--mode", f"reverse:http://{HOST}:{prod}", "--listen-host", HOST, "-p", str(proxy_port)]
    if scn.addon:
        cmd += [
            "--set",
            f"mappings={s.tmp / mappings_path(scn.mappings)}",
            "--set",
            f"mapping_services=prod-svc={HOST}:{prod}",
        ]
        if scn.shadow is not None:
            cmd += ["--set", f"mapping_services=shadow-svc={HOST}:{ports[scn.shadow]}"]
        if admin_port is not None:
            cmd += ["--set", f"shadow_admin={HOST}:{admin_port}"]
        for opt in (*scn.options, *s.args.addon_option):
            cmd += ["--set", opt]
    return cmd


@dataclass(slots=True)
class Mitmdump:
    proc: asyncio.subprocess.Process
    cmd: list[str]
    port: int  # the proxy's
    admin_port: int | None  # the addon's admin server, when it has one
    log_path: Path
    startup_s: float = 0.0  # until it listens
    ready_s: float = 0.0  # until it answers (the addon has read its Mappings)
    ready_cpu_s: float = 0.0  # mitmdump's CPU time by then: the start-up's cost even when the machine is busy

    def output(self) -> list[str]:
        """What mitmdump printed (the first 60 non-empty lines)."""
        return [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()][:60]


@contextlib.asynccontextmanager
async def running_mitmdump(s: Setup, scn: Scenario, label: str) -> AsyncIterator[Mitmdump]:
    """A fresh mitmdump for `scn` on its own CPU, listening; always stopped on the way out."""
    proxy_port = free_port()
    pkg = package_of(s, scn)
    admin_port = free_port() if scn.addon and pkg.admin else None
    cmd = mitmdump_cmd(s, scn, proxy_port, admin_port)
    log_path = s.tmp / f"mitmdump-{label}.log"
    t_start = time.monotonic()
    with open(log_path, "wb") as logf:
        proc = await spawn(
            f"mitmdump {label}", cmd, s.mitm_cpus, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=pkg.env
        )
    m = Mitmdump(proc, cmd, proxy_port, admin_port, log_path)
    try:
        try:
            await wait_port(proxy_port, proc, "mitmdump")
        except RuntimeError as e:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{e}\ncommand: {' '.join(cmd)}\noutput:\n{tail}") from None
        m.startup_s = round(time.monotonic() - t_start, 2)
        await wait_answer(proxy_port, proc, "mitmdump")
        m.ready_s = round(time.monotonic() - t_start, 2)
        m.ready_cpu_s = round(cpu_seconds(proc.pid) or math.nan, 2)
        yield m
    finally:
        await stop(proc)
