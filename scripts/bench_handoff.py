"""CPU time per request of the copy's hand-off on the event loop, alone: a copy's bytes built and written to a
loopback socket (one buffer with `write`, or the parts with `writelines`), Envoy's connection-manager header
edits of a production request, and the addon's hooks for one routed and copied request (`requestheaders`,
`request`, `response`, in mitmproxy's test context, the copy's bytes built but not sent), with Envoy's headers on
and off. `--package DIR`: measure another shadow_addon package (its parent directory on
sys.path first), e.g. main's from `git archive main shadow_addon | tar -x -C /tmp/main` for a before/after.

    .venv/bin/python scripts/bench_handoff.py [--package /tmp/main] [--n 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import socket
import sys
import tempfile
import time
import timeit

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from benchkit.scenarios import MAPPINGS_YAML  # noqa: E402 - the benchmark's Mappings: / copied 100 % to shadow-svc


async def _writes(n: int) -> None:
    from shadow_addon.mappings import Address
    from shadow_addon.sender import Copy, assemble

    fields = ((b"User-Agent", b"wrk"), (b"Accept", b"*/*"), (b"x-forwarded-for", b"127.0.0.1"))
    c = Copy("m", "s", Address("http", "127.0.0.1", 1), "GET", "/bench", "h-shadow", fields, b"", 3.0)
    a, b = socket.socketpair()
    b.setblocking(False)
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(asyncio.Protocol, a)
    for mode in ("writelines", "write", "writelines", "write"):
        t = time.process_time()
        for i in range(n):
            parts = assemble(c)
            if mode == "write":
                transport.write(b"".join(parts))
            else:
                transport.writelines(parts)
            if i % 50 == 0:  # the peer reads, as a shadow would; bounded: one recv per call until empty
                for _ in range(1000):
                    try:
                        if not b.recv(1 << 20):
                            break
                    except BlockingIOError:
                        break
                await asyncio.sleep(0)
        print(f"copy built and written with {mode:10s} {(time.process_time() - t) / n * 1e6:6.2f} us CPU per copy")
    transport.close()
    b.close()


def _hooks(n: int) -> dict[bool, float]:
    """Best of 5: CPU seconds per request of the hooks of a request as wrk sends it, routed and copied, with
    Envoy's headers on and off."""
    from mitmproxy import http
    from mitmproxy.addons.proxyserver import Proxyserver
    from mitmproxy.test import taddons, tflow, tutils

    from shadow_addon import sender
    from shadow_addon.shadow import Shadow

    class Bytes:
        """The sender's stand-in: builds the copy's bytes, sends nothing."""

        def submit(self, c: sender.Copy) -> None:
            b"".join(sender.assemble(c))

        def close(self) -> None:
            pass

    def flows() -> list[http.HTTPFlow]:
        out = []
        for _ in range(n):
            f = tflow.tflow(req=tutils.treq(path=b"/bench", headers=http.Headers(host="127.0.0.1:8080"), content=b""))
            f.client_conn.peername, f.client_conn.sockname = ("127.0.0.1", 40000), ("127.0.0.1", 8080)
            out.append(f)
        return out

    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        mappings = pathlib.Path(tmp) / "mappings.yaml"
        mappings.write_text(MAPPINGS_YAML)
        sh = Shadow()
        with taddons.context(Proxyserver(), sh) as tctx:
            services = ["prod-svc=127.0.0.1:8001", "shadow-svc=127.0.0.1:8002"]
            tctx.configure(
                sh, mode=["reverse:http://127.0.0.1:8001"], mappings=str(mappings), mapping_services=services
            )
            answer = tutils.tresp()
            for on in (True, False):
                tctx.configure(sh, mapping_envoy_headers=on)
                sh.sender = Bytes()  # type: ignore[assignment]
                best = float("inf")
                for _ in range(5):
                    fs = flows()
                    t = time.process_time()
                    for f in fs:
                        sh.requestheaders(f)
                        sh.request(f)
                        f.response = answer
                        sh.response(f)
                    best = min(best, (time.process_time() - t) / n)
                result[on] = best
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", help="directory holding the shadow_addon package to measure")
    ap.add_argument("--n", type=int, default=20000)
    args = ap.parse_args()
    if args.package:
        sys.path.insert(0, args.package)
    from mitmproxy.http import Headers

    from shadow_addon import envoyheaders

    print("package:", envoyheaders.__file__)
    d = envoyheaders.Downstream("127.0.0.1", "127.0.0.1", False)
    base = [(b"Host", b"127.0.0.1:8080"), (b"User-Agent", b"wrk"), (b"Accept", b"*/*")]

    def cm() -> None:
        envoyheaders.connection_manager(Headers(base), d, "id")

    best = min(timeit.repeat(cm, number=args.n, repeat=5)) / args.n
    print(f"connection_manager (with Headers built)   {best * 1e6:6.2f} us per request (best of 5)")
    for on, seconds in _hooks(max(1, args.n // 4)).items():
        label = f"hooks, Envoy's headers {'on' if on else 'off'}"
        print(f"{label:42s} {seconds * 1e6:6.2f} us per request (best of 5)")
    asyncio.run(_writes(args.n))


if __name__ == "__main__":
    main()
