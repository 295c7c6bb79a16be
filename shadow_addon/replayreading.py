"""The replay's own readings of a capture file: with `-r`, noise learned from the whole capture before the first
comparison; and `mitmshadow replay`'s reading (`Replay.play`), which hands each flow straight to the replay, with no
other addon's hooks (its noise is learned as the answers come, `compare.ordered`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Protocol

from mitmproxy import ctx, exceptions, flowfilter, http
from mitmproxy.proxy.mode_specs import ReverseMode

from . import capture, routing
from .compare.pairing import Pairing
from .replaypolicy import as_live
from .replayshards import Reading
from .words import plural

logger = logging.getLogger("shadow")

LEARN_BATCH = 200  # recorded flows learned from per loop iteration


class Routes(Protocol):
    """What the learning reads of the addon (`Shadow`): its routes and its comparison."""

    @property
    def table(self) -> routing.Table: ...
    @property
    def pairing(self) -> Pairing | None: ...

    def route_of(self, req: http.Request, routed: str | None = None, every: bool = False) -> routing.Route | None:
        """The request's route (the canary pick, the shadow if sampled); `routed`: the Mapping that routed it."""
        ...


async def learn_noise(shadow: Routes, path: str) -> None:
    """Learn noise from the whole capture before the first comparison: production's answers to identical
    requests that differ. Streamed, a few hundred flows per loop iteration; nothing is sent."""
    try:
        with open(os.path.expanduser(path), "rb") as fh:
            for i, f in enumerate(capture.read_flows(fh)):
                if shadow.pairing is None or not shadow.table.groups:
                    return
                if isinstance(f, http.HTTPFlow) and f.response is not None and f.response.raw_content is not None:
                    route = shadow.route_of(f.request, f.metadata.get("shadow_mapping"))
                    if route is not None and route.group.shadow is not None:
                        # A fresh flow id: no comparison waits for it, so this only learns.
                        flow = as_live(f, route, ctx.options.keep_host_header)
                        shadow.pairing.production_answered(flow, route.group.shadow.name, learn_only=True)
                if i % LEARN_BATCH == LEARN_BATCH - 1:
                    await asyncio.sleep(0)
    except (OSError, exceptions.FlowReadException):
        return  # mitmproxy's reader reports the same problem


async def read(
    path: str, recorded: Callable[[http.HTTPFlow], Awaitable[None] | None], reading: Reading | None = None
) -> None:
    """Every flow of the capture to `recorded`, waiting where it says to (the shadow's room, the pace), as
    mitmproxy's readfile addon hands them to every addon (`Master.load_flow`), with its filter. `reading`: marks
    each flow's place in the capture and keeps this process's part (`replayshards`)."""
    o = ctx.options
    match = flowfilter.parse(o.readfile_filter) if o.readfile_filter else None
    # In reverse mode, mitmproxy points a loaded flow at the reverse target (master.py Master.load_flow).
    mode = ReverseMode.parse(o.mode[0]) if len(o.mode) == 1 and o.mode[0].startswith("reverse:") else None
    n = 0
    try:
        with open(os.path.expanduser(path), "rb") as fh:
            keep = reading.keep if reading is not None else None
            # A filter may look at any part of a flow: mitmproxy's reader then builds every flow whole.
            for f in capture.recorded_flows(fh, whole=match is not None, keep=keep):
                if reading is not None:
                    reading.mark(f)
                if match is not None and not match(f):
                    continue
                n += 1
                if not isinstance(f, http.HTTPFlow):
                    continue
                if isinstance(mode, ReverseMode):
                    f.request.host, f.request.port, *_ = mode.address
                    f.request.scheme = mode.scheme
                waiting = recorded(f)
                if waiting is not None:
                    await waiting
                elif n % LEARN_BATCH == 0:
                    await asyncio.sleep(0)  # outcomes are taken in between
    except (OSError, exceptions.FlowReadException) as e:
        if n:
            logger.warning("Flow file corrupted - loaded %i flows.", n)
        logger.error("Failed to read %s: %s", path, e)
    except Exception:  # noqa: BLE001 - logged as an error (as mitmproxy logs a failing hook): no verdict then
        logger.exception("replay: %s stopped after %s", path, plural(n, "recorded flow"))
