"""Child processes and loopback ports: start in a process group, stop for sure, wait for a port."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent  # the repository
HOST = "127.0.0.1"
READY_TIMEOUT = 15.0  # s for a child (mitmdump, nginx) to open its port
ANSWER_TIMEOUT = 120.0  # s for mitmdump to answer: reading 10,000 Mappings on a busy machine takes a while
STOP_TIMEOUT = 5.0  # s between SIGTERM and SIGKILL

_children: dict[int, str] = {}  # pid (= its process group id) -> name, for the last-resort cleanup


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def module_cmd(module: str, *args: str) -> list[str]:
    """How to run one of this package's modules as a child; `scripts/bench` puts the package on PYTHONPATH, which
    children inherit."""
    return [sys.executable, "-m", module, *args]


def _die_with_parent() -> None:
    """preexec_fn: have the kernel SIGKILL the child if this process dies (Linux; best effort)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


async def spawn(name: str, cmd: Sequence[str], cpus: set[int] | None = None, **kw: Any) -> asyncio.subprocess.Process:
    """Start a child in its own process group (so stop() takes its children too), on `cpus` when given (set before
    exec, so every thread the child starts inherits it)."""

    def prepare() -> None:
        _die_with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)

    proc = await asyncio.create_subprocess_exec(*cmd, start_new_session=True, preexec_fn=prepare, **kw)
    _children[proc.pid] = name
    return proc


async def stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, SIGKILL it after STOP_TIMEOUT; always reaps."""
    try:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything the child left in its group
    finally:
        _children.pop(proc.pid, None)


def kill_leftovers() -> None:
    """Synchronous last resort (Ctrl-C during cleanup, unexpected errors): SIGKILL every group still known."""
    for pid in list(_children):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        _children.pop(pid, None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A port nothing listens on (checked), for the refusing shadow."""
    for _ in range(20):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex((HOST, port)) != 0:
                return port
    raise RuntimeError("could not find a closed port")


async def port_state(port: int) -> str:
    """'listening', 'refusing', or what else connecting to the port found."""
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(HOST, port), 1.0)
    except ConnectionRefusedError:
        return "refusing"
    except (OSError, TimeoutError) as e:
        return f"connect failed: {e!r}"[:80]
    w.close()
    with contextlib.suppress(OSError):
        await w.wait_closed()
    return "listening"


async def wait_port(port: int, proc: asyncio.subprocess.Process, what: str) -> None:
    """Poll until something accepts on port (bounded by READY_TIMEOUT); fail early if proc exited."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening")
        if await port_state(port) == "listening":
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {HOST}:{port} within {READY_TIMEOUT:g}s")


async def wait_answer(port: int, proc: asyncio.subprocess.Process, what: str) -> None:
    """Poll until an HTTP request through the port gets a status line (bounded by ANSWER_TIMEOUT). mitmproxy
    listens before the addon has read its Mappings (connections wait in the backlog), so only an answer says
    the proxy is serving. `OPTIONS *` matches no Mapping: no copy reaches the shadow to skew its counts."""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before answering")
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(HOST, port), 1.0)
            try:
                w.write(b"OPTIONS * HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                line = await asyncio.wait_for(r.readline(), max(0.1, deadline - time.monotonic()))
            finally:
                w.close()
                with contextlib.suppress(OSError):
                    await w.wait_closed()
            if line.startswith(b"HTTP/"):
                return
        except (OSError, TimeoutError):
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{what} did not answer on {HOST}:{port} within {ANSWER_TIMEOUT:g}s")
