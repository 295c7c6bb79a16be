"""Shadowing a recorded capture: flows read with `mitmdump -r` (a flow file or a HAR) are routed and copied as they
would have been live, and the recorded response plays production's part in the metrics and the comparison.
Production is never contacted.

mitmproxy feeds each recorded flow through every hook in turn and awaits the hooks before reading the next one
(`Master.load_flow`), so waiting in a hook holds back the reading: at most `shadow_max_inflight` copies per shadow
service are under way, and the rest of the capture stays on disk. mitmdump's KeepServing exits as soon as the file
is read; copies still in flight would be lost, so this takes over that job and exits once every copy has an outcome.

`mitmshadow replay` hands the capture to this addon alone instead (`play`): each recorded flow, built by
`recorded` rather than by mitmproxy's reader, goes straight to `recorded()`, with no other addon's hooks, so a
large capture takes the time the shadow takes to answer it, not the time mitmproxy takes to hand it around.
The capture is read once: noise is learned from production's answers as they come, and the pairs, judged at the
end in the capture's order, are compared again then with all the noise it taught when they differed
(`compare.ordered`). With `-r` noise is learned from the whole capture first, in a reading of its own: pairs are
judged as they come there.

This module holds the `Replay` itself: its wiring into the addon's lifecycle, each recorded flow routed and copied
within the window of copies under way, their outcomes, and the exit once every copy has one. How one flow is played
(pace, window, what is not copied) is in `replaypolicy`; the replay's own readings of the capture file (`-r`'s
learning of noise, `play`'s reading) in `replayreading`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterator
from typing import Any, Protocol

from mitmproxy import ctx, http

from . import capture, copies, dispatch, production, replaynotes, replayreading, replayshards, routing
from .addresses import Address
from .compare import ordered
from .compare.ordered import CaptureOrder
from .metrics import Metrics
from .reasons import DropReason
from .replaypolicy import as_live, inflight, pace_delay, skip_reason, window
from .replayshards import Shard, ShardGone
from .sender import Copy, Sender
from .settings import Settings
from .words import plural

logger = logging.getLogger("shadow")

PROGRESS_INTERVAL = 10.0  # s between progress lines while a capture is replayed
# What mitmdump's KeepServing waits for before it exits (mitmproxy/addons/keepserving.py).
BUSY_COMMANDS = ("readfile.reading", "replay.client.count", "replay.server.count", "proxyserver.active_connections")


class Host(dispatch.Rooms, Protocol):
    """What a replay reads of the addon that feeds it (`Shadow`): the rooms a copy goes through, its routes and its
    metrics."""

    @property
    def table(self) -> routing.Table: ...
    @property
    def metrics(self) -> Metrics: ...

    def route_of(self, req: http.Request, routed: str | None = None, every: bool = False) -> routing.Route | None:
        """The request's route (the canary pick, the shadow if sampled); `routed`: the Mapping that routed it."""
        ...


class Replay:
    """The offline path of the addon: one instance per Shadow, fed by its `request` hook and its sender's results."""

    def __init__(self, shadow: Host) -> None:
        self.shadow = shadow
        self.outstanding: dict[Address, int] = {}  # copies of recorded flows under way, per shadow service
        self.keys: set[str] = set()  # their keys (the recorded flow's id, made unique)
        self.waiters: list[asyncio.Future[None]] = []
        self.read = self.copies = self.settled_copies = 0
        self.to_shadow = 0  # recorded requests whose route has a shadow (copied or not)
        self.sampled_out = 0  # of those, the ones the shadow's weight did not sample
        self.example = ""  # a recorded request that went to no shadow, for the message when none did
        self.longest = 0.0  # the longest copy timeout seen: bounds the wait at exit
        self._clock: tuple[float, float] | None = None
        self._window_of: tuple[Settings, int] | None = None  # the settings `_window` was worked out for, and it
        self._sender: Sender | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._learning: asyncio.Task[None] | None = None
        self._reading: asyncio.Task[Any] | None = None  # a capture read flow by flow (capture.feed, `_read`)
        self.shard: Shard | None = None  # `play`'s part of a capture replayed by several processes
        self.parts: list[str] = []  # the other processes' pairs as compared (`compare.ordered`), to judge with ours
        self.parts_errors = 0  # errors the other processes logged
        self.parts_sampled = 0  # their pairs with noise samples (`CaptureOrder.sampled`)
        self.whole = False  # the other processes' counts are in this one's (`_merged`)
        self._progress: replayshards.Progress | None = None  # how far each process has played (`Progress`)

    # ------------------------------------------------------------------ lifecycle

    def running(self) -> None:
        o = ctx.options
        rfile = getattr(o, "rfile", None)
        if rfile and rfile != "-" and self.shadow.pairing is not None:
            self.shadow.pairing.offline()  # no live production to keep fast: every pair is compared
            self._learning = asyncio.get_running_loop().create_task(self._learn_noise(rfile))
        if rfile and rfile != "-" and capture.reads_rfile(ctx.master) and capture.is_har(rfile):
            # mitmproxy's readfile parses a HAR whole; it is read entry by entry here instead. readfile's own
            # `running` comes after this one (script addons come first) and then finds nothing to read.
            o.update(rfile=None)
            self._reading = asyncio.get_running_loop().create_task(capture.feed(rfile, ctx.master, o.readfile_filter))
        if ctx.master.addons.get("keepserving") is None or o.keepserving:  # mitmweb and the console keep serving
            return
        if not (rfile or o.client_replay):
            return
        # KeepServing would exit with copies in flight: it is told to keep serving, and `_exit_when_settled`
        # exits on the same conditions once every copy of the capture has an outcome.
        o.update(keepserving=True)
        self._watcher = asyncio.get_running_loop().create_task(self._exit_when_settled())

    def play(self, path: str, shard: Shard | None = None) -> None:
        """Replay the capture at `path` directly (`mitmshadow replay`): read it once, copy its flows, learn noise from
        production's answers as they come, and exit once every copy has an outcome, as with `-r`. `shard`: this
        process's part of a capture replayed by several (`replayshards`)."""
        loop = asyncio.get_running_loop()
        self.shard = shard
        self._progress = replayshards.Progress(shard) if shard is not None else None
        if self.shadow.pairing is not None:
            self.shadow.pairing.offline()
            self.shadow.pairing.in_capture_order(CaptureOrder(replayshards.pairs_path(shard)))
        self._reading = loop.create_task(self._read(path, shard))
        self._watcher = loop.create_task(self._exit_when_settled())

    async def _learn_noise(self, path: str) -> None:
        """`-r`: noise learned from the whole capture before the first comparison (`replayreading.learn_noise`)."""
        await replayreading.learn_noise(self.shadow, path)

    async def _read(self, path: str, shard: Shard | None = None) -> None:
        """`play`'s reading: every flow of the capture (of its `shard`) to `recorded`, as this replay's own
        (`replayreading.read`)."""
        try:
            reading = replayshards.Reading(shard)
            await replayreading.read(path, lambda f: self.recorded(f, own=True), reading)
        except ShardGone as e:
            logger.error("%s", e)
        finally:
            if self._progress is not None:
                self._progress.done()

    def done(self) -> None:
        for task in (self._watcher, self._learning, self._reading):
            if task is not None:
                task.cancel()
        self._watcher = self._learning = self._reading = None
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self._wake(cancel=True)

    # ------------------------------------------------------------------ recorded flows

    def recorded(self, flow: http.HTTPFlow, own: bool = False) -> Awaitable[None] | None:
        """A flow from a capture: routed now; copied now, or once the shadow has room or the recorded time comes.
        `own`: the flow is this replay's alone (`play`), so it is played as it is, not on a copy."""
        sh = self.shadow
        self.read += 1
        if not sh.table.groups:
            return None
        route = sh.route_of(flow.request, flow.metadata.get("shadow_mapping"), every=sh.settings.replay_every)
        if route is None or route.group.shadow is None:
            self.example = self.example or f"{flow.request.method} {flow.request.path[:200]}"
        else:
            self.to_shadow += 1
            self.sampled_out += route.shadow is None
        if route is None:
            production.record(sh.metrics, flow, None)
            return None
        speed = sh.settings.replay_speed
        now = asyncio.get_running_loop().time()
        delay = pace_delay(speed, self._clock, flow.request.timestamp_start, now)
        if speed > 0 and self._clock is None:
            self._clock = (flow.request.timestamp_start, now)
        learning = self._learning is not None and not self._learning.done()
        position = replayshards.position_of(flow, self.read) if own else None
        pace = self._progress
        if pace is not None and position is not None:
            pace.publish(position - 1)  # done with every entry before this one
            if pace.ahead(position):
                return self._play_later(flow, route, delay, own, position)
        if delay <= 0 and not learning and self._room(route):
            self._play(flow, route, own, position)
            return None
        return self._play_later(flow, route, delay, own, position)

    async def _play_later(
        self, flow: http.HTTPFlow, route: routing.Route, delay: float, own: bool, position: int | None
    ) -> None:
        if self._learning is not None:
            await asyncio.shield(self._learning)
        if self._progress is not None and position is not None:
            await self._progress.wait(position)  # the other processes of a split replay keep pace
        if delay > 0:
            await asyncio.sleep(delay)
        while not self._room(route):
            fut = asyncio.get_running_loop().create_future()
            self.waiters.append(fut)
            await fut
        self._play(flow, route, own, position)

    def _room(self, route: routing.Route) -> bool:
        self._check_sender()
        pairing = self.shadow.pairing
        if pairing is not None and pairing.order is not None and pairing.order.waiting >= ordered.WAITING:
            return False  # pairs held behind one still waiting for its answer: read on once it comes
        a = route.shadow_address
        return a is None or self.outstanding.get(a, 0) < self._window()

    def _window(self) -> int:
        """`window` for the settings in force, worked out once per configuration: this runs for every recorded
        flow, and mitmproxy's `has_changed` copies the option's value and default each time."""
        s = self.shadow.settings
        if self._window_of is None or self._window_of[0] is not s:
            n = inflight(s.max_inflight, ctx.options.has_changed("shadow_max_inflight"))
            w = window(n, s.max_backlog)
            self._window_of = (s, self.shard.window(w) if self.shard is not None else w)
        return self._window_of[1]

    def _play(self, flow: http.HTTPFlow, route: routing.Route, own: bool = False, position: int | None = None) -> None:
        sh = self.shadow
        dup = as_live(flow, route, ctx.options.keep_host_header, own)
        key = dup.id = flow.id if flow.id not in self.keys else f"{flow.id}.{self.read}"
        if dup.response is not None:
            production.record(sh.metrics, dup, route)
        elif dup.error is not None:
            production.record_error(sh.metrics, route)
        shadow = route.shadow
        if shadow is None or route.shadow_address is None or sh.sender is None:
            return
        why = skip_reason(dup.request, sh.settings.body_limit, sh.settings.methods)
        if why is not None:
            sh.metrics.record_drop(shadow.name, why)
            return
        body = dup.request.raw_content
        assert body is not None
        paired = sh.pairing is not None and dup.response is not None
        self.keys.add(key)
        self.outstanding[route.shadow_address] = self.outstanding.get(route.shadow_address, 0) + 1
        self.copies += 1
        self.longest = max(self.longest, copies.timeout_of(route, sh.settings))
        dispatch.submit(sh, key, dup.request, route, body, paired, position=position)
        if paired and sh.pairing is not None:
            sh.pairing.production_answered(dup, shadow.name)

    def settled(self, c: Copy) -> None:
        """A copy has its outcome (called for every copy, live ones included)."""
        key = c.context
        if key not in self.keys:
            return
        self.keys.discard(key)
        self.settled_copies += 1
        n = self.outstanding.get(c.address, 0) - 1
        if n > 0:
            self.outstanding[c.address] = n
        else:
            self.outstanding.pop(c.address, None)
        self._wake()

    def _wake(self, cancel: bool = False) -> None:
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.cancel() if cancel else fut.set_result(None)

    def _check_sender(self) -> None:
        """A rebuilt sender (options changed) cancels its copies without outcomes: forget them."""
        if self.shadow.sender is not self._sender:
            self._sender = self.shadow.sender
            if self.keys:
                self.keys.clear()
                self.outstanding.clear()
                self._wake()

    # ------------------------------------------------------------------ exit

    def judge(self) -> None:
        """`play`'s pairs judged, in the capture's order (`compare.ordered`), once every copy has its outcome; in
        the first process of a split replay, with the other processes' pairs, merged by their place in it."""
        pairing = self.shadow.pairing
        order = pairing.order if pairing is not None else None
        if pairing is None or order is None:
            return
        pairing.order = None
        order.finish()

        def pairs(replies: bool) -> Iterator[ordered.Compared]:
            return ordered.merged([order.compared(replies), *(ordered.read(p, replies) for p in self.parts)])

        try:
            pairing.judge_in_order(pairs, sampled=order.sampled + self.parts_sampled > 0)
        finally:
            order.close()

    def nothing_copied(self) -> str | None:
        """Why no request of the capture was copied, when none was (`replaynotes.nothing_copied`)."""
        return replaynotes.nothing_copied(
            self.read, self.copies, self.to_shadow, self.sampled_out, self.example, self.shadow.table.groups
        )

    def timeouts(self) -> str | None:
        """The copies that timed out, and the options that decide it, when some did."""
        return replaynotes.timeouts(sum(self.shadow.metrics.drops(DropReason.TIMEOUT).values()), self.copies)

    def progress(self) -> str:
        pending = len(self.keys)
        done = self.copies - pending
        part = f" ({self.shard.label()})" if self.shard is not None and not self.whole else ""
        return (
            f"replay{part}: {plural(self.read, 'recorded flow')}, {plural(self.copies, 'copy', 'copies')}, "
            f"{done} done, {pending} in flight"
        )

    def _under_way(self) -> int:
        """Copies without an outcome: of recorded flows, and of client-replayed ones (counted by the sender)."""
        sender = self.shadow.sender
        in_sender = sender.occupancy().copies if sender is not None else 0
        pairing = self.shadow.pairing
        decoding = pairing.decoding if pairing is not None else 0  # answers still being decoded for comparison
        return max(len(self.keys), in_sender) + decoding

    async def _exit_when_settled(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        idle_since: float | None = None
        shown = ""
        while True:
            await asyncio.sleep(0.1)
            self._check_sender()
            now = loop.time()
            if now - last >= PROGRESS_INTERVAL:
                last, line = now, self.progress()
                if line != shown:
                    shown = line
                    logger.info(line)
            reading = self._reading is not None and not self._reading.done()
            if reading or any(ctx.master.commands.call(c) for c in BUSY_COMMANDS):
                idle_since = None
                continue
            if idle_since is None:
                idle_since = now
            # Every copy ends within its timeout (the sender's guarantee); the margin only guards against a bug.
            late = now - idle_since > 2 * self.longest + 5.0
            under_way = self._under_way()
            if not under_way or late:
                if under_way:
                    logger.warning("replay: %s still had no outcome; exiting", plural(under_way, "copy", "copies"))
                if self.shard is not None and not await self._merged():
                    self._finish_pairs()  # judged by the first process, with everyone's
                    ctx.master.shutdown()  # a part's figures are left for the first process once it stops (gate)
                    return
                self.judge()
                if self.read:
                    logger.info(self.progress())
                for note in (self.nothing_copied(), self.timeouts()):
                    if note is not None:
                        logger.warning(note)
                ctx.master.shutdown()
                return

    # ------------------------------------------------------------------ a capture split over processes

    def tally(self) -> dict[str, Any]:
        """The counts a process of a split replay leaves for the first one (`absorb`)."""
        return {
            "read": self.read,
            "copies": self.copies,
            "to_shadow": self.to_shadow,
            "sampled_out": self.sampled_out,
            "example": self.example,
            "longest": self.longest,
            "sampled": self._sampled(),
        }

    def _sampled(self) -> int:
        pairing = self.shadow.pairing
        return pairing.order.sampled if pairing is not None and pairing.order is not None else 0

    def absorb(self, counts: dict[str, Any]) -> None:
        """Another process's counts (`tally`) added to this one's, for the notes at exit."""
        self.read += counts["read"]
        self.copies += counts["copies"]
        self.settled_copies += counts["copies"]
        self.to_shadow += counts["to_shadow"]
        self.sampled_out += counts["sampled_out"]
        self.example = self.example or counts["example"]
        self.longest = max(self.longest, counts["longest"])
        self.parts_sampled += counts["sampled"]

    async def _merged(self) -> bool:
        """In the first process of a split replay, every other process's figures added to this one's once it has
        stopped (its pairs are judged with this one's, `judge`): True. In any other process False."""
        shard = self.shard
        if shard is None or not shard.merges:
            return False
        parts = await replayshards.gather(shard, self.shadow.metrics)
        for counts in parts.counts:
            self.absorb(counts)
        pairing = self.shadow.pairing
        if pairing is not None:  # their pairs and ours that differed are compared again with all of it (`judge`)
            for lessons in parts.noise:
                pairing.learner.teach(lessons)
        self.parts, self.parts_errors, self.whole = parts.pairs, parts.errors, True
        return True

    def _finish_pairs(self) -> None:
        """A part of a split replay: its pairs as compared, complete, for the first process to judge."""
        pairing = self.shadow.pairing
        if pairing is not None and pairing.order is not None:
            pairing.order.finish()
