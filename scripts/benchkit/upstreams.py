"""The benchmark's handle on its upstream servers: the asyncio ones (benchkit.servers, one child for the
well-behaved and slow ones, another for the hostile shadows so their endless answers never delay production's
server) and nginx for production and the healthy shadow when it is installed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from benchkit.answers import BODY, CONTENT_TYPE
from benchkit.procs import HOST, closed_port, free_port, log, module_cmd, spawn, stop, wait_port

CONTROL_TIMEOUT = 10.0  # s for a server process to answer a control line
BUILD_TIMEOUT = 300.0  # s for a server process to build its answers (the bombs) and listen
ORDINARY = ("prod", "healthy", "slow", "veryslow", "blackhole", "flap")
GRPC = ("grpcprod", "grpcshadow")  # served by benchkit.grpcservers


class ServerProcess:
    """One `benchkit.servers` child, controlled over stdin/stdout, one JSON line each way."""

    def __init__(self, proc: asyncio.subprocess.Process, hello: dict[str, Any]) -> None:
        self.proc = proc
        self.ports: dict[str, int] = hello["ports"]
        self.answer_bytes: dict[str, int] = hello.get("answer_bytes", {})
        self._lock = asyncio.Lock()  # one control line and its answer at a time

    @classmethod
    async def start(cls, names: tuple[str, ...], bomb_mib: int, grpc: bool = False) -> ServerProcess:
        if grpc:
            cmd = module_cmd("benchkit.grpcservers", ",".join(names))
        else:
            cmd = module_cmd("benchkit.servers", ",".join(names), "--bomb-mib", str(bomb_mib))
        proc = await spawn("servers", cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), BUILD_TIMEOUT)
            if not line:
                raise RuntimeError(f"the upstream servers ({', '.join(names)}) exited before listening")
            return cls(proc, json.loads(line))
        except BaseException:
            await stop(proc)
            raise

    async def control(self, command: str) -> dict[str, Any]:
        """Send one control line; its one-line JSON answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        async with self._lock:
            self.proc.stdin.write(command.encode() + b"\n")
            await self.proc.stdin.drain()
            line = await asyncio.wait_for(self.proc.stdout.readline(), CONTROL_TIMEOUT)
        if not line:
            raise RuntimeError("an upstream server process exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.close()
        await stop(self.proc)


class Nginx:
    """nginx (from PATH) serving production and the healthy shadow; counts come from its access logs."""

    def __init__(self, proc: asyncio.subprocess.Process, ports: dict[str, int], logs: dict[str, Path]) -> None:
        self.proc, self.ports, self.logs = proc, ports, logs

    @classmethod
    async def start(cls, binary: str, workdir: Path) -> Nginx:
        workdir.mkdir(parents=True, exist_ok=True)
        ports = {"prod": free_port(), "healthy": free_port()}
        logs = {name: workdir / f"{name}.access" for name in ports}
        assert b"$" not in BODY  # nginx would expand it as a variable; quotes and \n are escaped by json.dumps
        servers = "".join(
            f"  server {{ listen {HOST}:{port}; access_log {logs[name]} bench;\n"
            f"    location / {{ return 200 {json.dumps(BODY.decode())}; }} }}\n"
            for name, port in ports.items()
        )
        temp = " ".join(f"{d}_temp_path {workdir / d};" for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = workdir / "nginx.conf"
        conf.write_text(
            f"daemon off; master_process off; worker_processes 1; pid {workdir / 'nginx.pid'};\n"
            f"error_log {workdir / 'error.log'} warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n"
            "  log_format bench '$http_x_mitmproxy_shadow';\n"
            f"  default_type {CONTENT_TYPE}; keepalive_requests 10000000; keepalive_timeout 300s;\n"
            f"  {temp}\n{servers}}}\n"
        )
        cmd = [binary, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")]
        proc = await spawn("nginx", cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for port in ports.values():
                await wait_port(port, proc, "nginx")
        except RuntimeError as e:
            await stop(proc)
            errors = (
                (workdir / "error.log").read_text(errors="replace")[-1000:] if (workdir / "error.log").exists() else ""
            )
            raise RuntimeError(f"{e}: {errors}") from None
        except BaseException:
            await stop(proc)
            raise
        return cls(proc, ports, logs)

    def stats(self) -> dict[str, dict[str, int]]:
        out = {}
        for name, path in self.logs.items():
            try:
                lines = path.read_bytes().splitlines()
            except OSError:
                lines = []
            n = len(lines)
            out[name] = {
                "requests": n,
                "marked": sum(1 for ln in lines if ln.strip() not in (b"", b"-")),
                "answered": n,
            }
        return out


class Upstreams:
    """Every upstream of a benchmark: the asyncio server processes, plus nginx when used."""

    def __init__(self, groups: list[ServerProcess], nginx: Nginx | None) -> None:
        self.groups, self.nginx = groups, nginx
        self.ports: dict[str, int] = {}
        self.answer_bytes: dict[str, int] = {}
        for g in groups:
            self.ports.update(g.ports)
            self.answer_bytes.update(g.answer_bytes)
        if nginx is not None:
            self.ports.update(nginx.ports)
        self.ports["refusing"] = closed_port()

    @property
    def kind(self) -> str:
        return "nginx (prod, healthy) + asyncio (benchkit)" if self.nginx else "asyncio (benchkit)"

    @property
    def pids(self) -> list[int]:
        return [g.proc.pid for g in self.groups] + ([self.nginx.proc.pid] if self.nginx else [])

    @classmethod
    async def start(
        cls, nginx_binary: str | None, workdir: Path, hostile: tuple[str, ...], bomb_mib: int, grpc: bool = False
    ) -> Upstreams:
        groups: list[ServerProcess] = []
        nginx = None
        try:
            groups.append(await ServerProcess.start(ORDINARY, bomb_mib))
            if hostile:
                groups.append(await ServerProcess.start(hostile, bomb_mib))
            if grpc:
                groups.append(await ServerProcess.start(GRPC, bomb_mib, grpc=True))
            if nginx_binary:
                nginx = await Nginx.start(nginx_binary, workdir / "nginx")
        except BaseException:
            for g in groups:
                await g.close()
            raise
        return cls(groups, nginx)

    async def stats(self) -> dict[str, dict[str, int]]:
        stats: dict[str, dict[str, int]] = {}
        for g in self.groups:
            stats.update(await g.control("stats"))
        if self.nginx is not None:
            stats.update(self.nginx.stats())
        return stats

    async def set_mode(self, mode: str) -> dict[str, Any]:
        """Switch the flapping shadow (servers.SWITCH_MODES); the answer tells whether its port is listening."""
        return await self.groups[0].control(f"mode {mode}")

    async def close(self) -> None:
        try:
            if self.nginx is not None:
                await stop(self.nginx.proc)
        finally:
            for g in self.groups:
                await g.close()


async def start_upstreams(
    which: str, workdir: Path, hostile: tuple[str, ...] = (), bomb_mib: int = 0, grpc: bool = False
) -> Upstreams:
    """The server processes (`hostile`: the hostile shadows to serve too; `grpc`: the gRPC ones), with nginx for
    production and the healthy shadow when asked for (`which`: auto, asyncio, nginx) and found."""
    nginx = shutil.which("nginx") if which in ("auto", "nginx") else None
    if which == "nginx" and not nginx:
        raise SystemExit("--upstreams nginx: nginx is not on PATH")
    try:
        return await Upstreams.start(nginx, workdir, hostile, bomb_mib, grpc)
    except RuntimeError as e:
        if which == "nginx" or not nginx:
            raise
        log(f"nginx did not start ({e}); using the asyncio upstreams")
        return await Upstreams.start(None, workdir, hostile, bomb_mib, grpc)
