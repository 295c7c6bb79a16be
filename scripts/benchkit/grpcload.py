"""gRPC load: grpcio (asyncio) clients calling the unary method in a closed loop over cleartext HTTP/2 with prior
knowledge, as `grpc.insecure_channel` does; one channel, so one HTTP/2 connection, per client."""

from __future__ import annotations

import asyncio
import time

from benchkit.grpcservers import GRPC_MESSAGE, GRPC_METHOD
from benchkit.load import DRAIN_GRACE, FAILURE_PAUSE, MAX_FAILURES, LoadResult, Mark
from benchkit.procs import HOST

CALL_TIMEOUT = 10.0  # s for one call
# A channel of its own per client: grpcio otherwise shares one connection among channels to the same target.
OPTIONS = (("grpc.use_local_subchannel_pool", 1),)


async def grpc_load(port: int, connections: int, warmup: float, duration: float, mark: Mark) -> LoadResult:
    """`connections` closed-loop clients for warm-up + duration; only calls started and completed inside the
    measured window count, failures count throughout."""
    import grpc

    res = LoadResult()
    lat: list[float] = []
    clock = time.perf_counter
    t_measure = clock() + warmup
    t_end = t_measure + duration
    message = bytes(GRPC_MESSAGE)

    async def client() -> None:
        async with grpc.aio.insecure_channel(f"{HOST}:{port}", options=OPTIONS) as ch:
            call = ch.unary_unary(GRPC_METHOD)
            failures = 0
            while failures <= MAX_FAILURES and (t0 := clock()) < t_end:
                try:
                    await call(message, timeout=CALL_TIMEOUT)
                except grpc.RpcError:
                    res.errors += 1
                    failures += 1
                    await asyncio.sleep(FAILURE_PAUSE)
                    continue
                failures = 0
                t1 = clock()
                if t0 >= t_measure and t1 <= t_end:
                    lat.append(t1 - t0)

    tasks = [asyncio.create_task(client()) for _ in range(connections)]
    try:
        await asyncio.sleep(max(0.0, t_measure - clock()))
        mark()
        await asyncio.sleep(max(0.0, t_end - clock()))
        mark()
        _, pending = await asyncio.wait(tasks, timeout=DRAIN_GRACE + CALL_TIMEOUT)
        res.unfinished = len(pending)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return res.measured(lat, duration)
