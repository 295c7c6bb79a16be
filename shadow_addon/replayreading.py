"""The replay's own readings of a capture file: noise learned from the whole capture before the first comparison
(with `-r` and with `mitmshadow replay`), and `mitmshadow replay`'s reading (`Replay.play`), which hands each flow
straight to the replay, with no other addon's hooks.

With `mitmshadow replay` the learning keeps the flows it builds on disk (`recorded.spill`), and the reading makes
the copies from them instead of parsing the capture again; with a filter, or when the flows could not all be kept,
the capture is read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from mitmproxy import ctx, exceptions, flowfilter, http
from mitmproxy.flow import Flow
from mitmproxy.proxy.mode_specs import ReverseMode

from . import capture, routing
from .compare.pairing import Pairing
from .recorded.spill import Spill
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


async def learn_noise(shadow: Routes, path: str, own: bool = False, reading: Reading | None = None) -> Spill | None:
    """Learn noise from the whole capture before the first comparison: production's answers to identical
    requests that differ. Streamed, a few hundred flows per loop iteration; nothing is sent. `own`: read with
    `recorded` (`Replay.play`), each flow the replay's alone, and the flows kept for the second reading: returned
    when the whole capture was read and kept. `reading`: `play`'s, which marks each flow's place in the capture and
    keeps this process's part of it (`replayshards`)."""
    # `play` reads the capture again once this is done: the flows read here are kept for it, as read.
    kept = Spill(fresh_ids=capture.is_har(path), beside=os.path.expanduser(path)) if own else None
    try:
        with open(os.path.expanduser(path), "rb") as fh:
            keep = reading.keep if reading is not None else None
            flows = capture.recorded_flows(fh, keep=keep) if own else capture.read_flows(fh, keep)
            for i, f in enumerate(flows):
                if shadow.pairing is None or not shadow.table.groups:
                    return None
                if reading is not None:
                    reading.mark(f)
                if kept is not None and not kept.add(f):
                    kept = None
                if isinstance(f, http.HTTPFlow) and f.response is not None and f.response.raw_content is not None:
                    route = shadow.route_of(f.request, f.metadata.get("shadow_mapping"))
                    if route is not None and route.group.shadow is not None:
                        # A fresh flow id: no comparison waits for it, so this only learns.
                        flow = as_live(f, route, ctx.options.keep_host_header, own)
                        shadow.pairing.production_answered(flow, route.group.shadow.name, learn_only=True)
                if i % LEARN_BATCH == LEARN_BATCH - 1:
                    await asyncio.sleep(0)
        whole, kept = kept, None  # the whole capture, read without an error
        return whole
    except (OSError, exceptions.FlowReadException):
        return None  # mitmproxy's reader reports the same problem
    finally:
        if kept is not None:
            kept.close()


async def read(
    path: str,
    learned: Callable[[], Awaitable[Spill | None]],
    recorded: Callable[[http.HTTPFlow], Awaitable[None] | None],
    reading: Reading | None = None,
) -> None:
    """Every flow of the capture to `recorded`, waiting where it says to (the shadow's room, the pace), as
    mitmproxy's readfile addon hands them to every addon (`Master.load_flow`), with its filter. `learned`: the
    flows the learning kept, once it is done (None: the capture is read again). `reading`: marks each flow's place
    in the capture (those the learning kept are marked already) and keeps this process's part (`replayshards`)."""
    o = ctx.options
    match = flowfilter.parse(o.readfile_filter) if o.readfile_filter else None
    # In reverse mode, mitmproxy points a loaded flow at the reverse target (master.py Master.load_flow).
    mode = ReverseMode.parse(o.mode[0]) if len(o.mode) == 1 and o.mode[0].startswith("reverse:") else None
    kept = await learned()
    n = 0
    try:
        with contextlib.ExitStack() as stack:
            if kept is not None:
                stack.callback(kept.close)
            # A filter may look at any part of a flow: mitmproxy's reader then builds every flow whole.
            if kept is not None and match is None:
                flows: Iterator[Flow] = kept.flows()  # as the learning read them, without parsing again
            else:
                fh = stack.enter_context(open(os.path.expanduser(path), "rb"))
                keep = reading.keep if reading is not None else None
                flows = capture.recorded_flows(fh, whole=match is not None, keep=keep)
            for f in flows:
                if reading is not None and (kept is None or match is not None):
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
