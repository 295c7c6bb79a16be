"""gRPC benchmark: production throughput with 100% of calls copied to a gRPC shadow over HTTP/2, against the same
proxy routing the same calls with no shadow, in interleaved rounds (a ratio per round, then the median).

    .venv/bin/python scripts/bench_grpc.py [--rounds 3] [--seconds 5] [--concurrency 8] [--size 1024]

Everything runs on loopback: two grpcio servers (production, shadow) in child processes, a fresh mitmdump with the
addon per run, and grpcio clients (one channel, so one HTTP/2 connection, per client thread) calling a unary
method in a closed loop. Target: the shadowed run keeps >= 0.90x the unshadowed run's throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MITMDUMP = Path(sys.executable).parent / "mitmdump"
ADDON = ROOT / "shadow_addon" / "addon.py"
METHOD = "/bench.Echo/Unary"
PREFIX = "/bench.Echo/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(port: int) -> None:
    """The child process: a grpcio server answering every call with its request."""
    from concurrent import futures

    import grpc

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Unary": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(8))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def mapping(name: str, service: str, shadow: bool) -> dict[str, object]:
    spec: dict[str, object] = {"prefix": PREFIX, "rewrite": PREFIX, "service": service, "grpc": True}
    if shadow:
        spec["shadow"] = True
    return {"apiVersion": "getambassador.io/v3alpha1", "kind": "Mapping", "metadata": {"name": name}, "spec": spec}


def load(port: int, seconds: float, concurrency: int, size: int) -> tuple[int, float]:
    """Calls completed in `seconds` by `concurrency` closed-loop clients, and the median latency in ms."""
    import grpc

    stop = time.monotonic() + seconds
    counts = [0] * concurrency
    lat: list[list[float]] = [[] for _ in range(concurrency)]
    body = bytes(size)

    def client(i: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            call = ch.unary_unary(METHOD)
            while (t0 := time.monotonic()) < stop:
                call(body, timeout=10)
                counts[i] += 1
                if counts[i] % 16 == 0:  # sampled: the list stays small
                    lat[i].append(time.monotonic() - t0)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    samples = [x for xs in lat for x in xs]
    return sum(counts), statistics.median(samples) * 1000 if samples else 0.0


def run(tmp: Path, prod: int, shadow: int | None, args: argparse.Namespace) -> tuple[float, float]:
    docs = [mapping("echo", f"127.0.0.1:{prod}", False)]
    if shadow is not None:
        docs.append(mapping("echo-shadow", f"127.0.0.1:{shadow}", True))
    mfile = tmp / ("shadowed.yaml" if shadow else "plain.yaml")
    mfile.write_text("\n---\n".join(json.dumps(d) for d in docs) + "\n")
    port = free_port()
    cmd = [str(MITMDUMP), "-q", "-s", str(ADDON), "--mode", f"reverse:http://127.0.0.1:{prod}"]
    cmd += ["--listen-host", "127.0.0.1", "-p", str(port), "--set", f"mappings={mfile}", "--set", "shadow_admin="]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
    try:
        wait_port(port)
        load(port, 1.0, args.concurrency, args.size)  # warm-up
        n, p50 = load(port, args.seconds, args.concurrency, args.size)
        return n / args.seconds, p50
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--size", type=int, default=1024, help="request (and answer) message bytes")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    ports = free_port(), free_port()
    servers = [subprocess.Popen([sys.executable, __file__, "--serve", str(p)]) for p in ports]
    ratios: list[float] = []
    try:
        for p in ports:
            wait_port(p)
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            print(f"{'round':>5} {'no shadow /s':>13} {'p50 ms':>7} {'shadowed /s':>12} {'p50 ms':>7} {'ratio':>6}")
            for r in range(1, args.rounds + 1):
                # Alternate which run goes first, so drift in the machine's speed does not favour one side.
                order = [None, ports[1]] if r % 2 else [ports[1], None]
                res = {s: run(tmp, ports[0], s, args) for s in order}
                (base, bp50), (shadowed, sp50) = res[None], res[ports[1]]
                ratios.append(shadowed / base if base else 0.0)
                print(f"{r:>5} {base:>13.0f} {bp50:>7.2f} {shadowed:>12.0f} {sp50:>7.2f} {ratios[-1]:>6.2f}")
        median = statistics.median(ratios)
        print(f"median throughput ratio, 100% gRPC shadowing vs none: {median:.2f}x (target >= 0.90x)")
        return 0 if median >= 0.90 else 1
    finally:
        for s in servers:
            s.terminate()
            s.wait(10)


if __name__ == "__main__":
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    sys.exit(main())
