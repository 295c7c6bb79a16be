"""Where a reply is built: at once on the event loop, or in one worker thread when decoding its body could hold
the loop (`decode.off_loop`: a brotli stream with a large window); either way within comparison's share of the
loop, the time it takes measured and spent from it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from ..budget import TimeBudget
from .decode import codings, known_refused, off_loop
from .reply import Reply, content_coding

logger = logging.getLogger(__name__)

OVER_BUDGET = "over the comparison's share of the event loop (shadow_compare_budget)"
# Bodies that `decode.off_loop` names are decoded in one worker thread: one brotli window in memory at a time.
# Beyond MAX_DECODING waiting for it, the pair is skipped (a shadow answering new bombs faster than they decode).
MAX_DECODING = 16
_worker: ThreadPoolExecutor | None = None


def _decoder() -> ThreadPoolExecutor:
    global _worker
    if _worker is None:
        _worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow-decode")
    return _worker


class ReplyBuilder:
    """Builds the replies of one comparison: `loop` is comparison's share of the event loop (building a reply,
    hashing and decoding it, is comparison's work), `timer` measures it, `body_limit` bounds what is decoded."""

    def __init__(self, loop: TimeBudget, timer: Callable[[], float], body_limit: int) -> None:
        self.loop = loop
        self.timer = timer
        self.body_limit = body_limit
        self.decoding = 0  # replies being decoded in the worker thread
        self.closed = False  # decodings still in the worker thread then end in nothing

    def build(
        self,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        make: Callable[[bool], Reply],
        then: Callable[[Reply], object],
        skip: Callable[[str], object],
    ) -> None:
        """Build a reply and hand it on: at once, or from the worker thread when decoding its body could hold the
        loop (`decode.off_loop`: a brotli stream with a large window), in which case the pair completes later."""
        limit = self.body_limit
        try:
            coding = content_coding(headers)
            # Without a Content-Encoding (most answers) there is nothing to decode, refuse or send off the loop.
            decodes = bool(coding) and bool(body) and len(body) <= limit and bool(codings(coding))
            refused = bool(coding) and known_refused(body, coding, limit)
            if decodes and not refused and not self.loop.allows():
                skip(OVER_BUDGET)  # decoding is comparison's work too
                return
            t = self.timer()  # building a reply (hashing, decoding) is comparison's work: measured
            if refused:
                reply = make(False)  # a bomb answered again: compared as sent, without looking it up twice
            elif not coding:
                reply = make(True)
            elif len(body) > limit or not off_loop(body, coding, limit):
                reply = make(True)
            else:
                reply = None
            if reply is None:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:  # no loop (a unit test, a script): nothing to keep free
                    reply = make(True)
            self.loop.spend(self.timer() - t)
        except Exception as e:  # a reply that cannot even be built is this pair's fault alone
            logger.debug("shadow compare: cannot build a reply", exc_info=True)
            skip(f"error: {type(e).__name__}")
            return
        if reply is not None:
            then(reply)
            return
        if self.decoding >= MAX_DECODING:
            skip("overload (decoding)")
            return
        self.decoding += 1

        def done(f: asyncio.Future[Reply]) -> None:
            self.decoding -= 1
            if self.closed:
                return
            if f.cancelled() or f.exception() is not None:
                skip("not decoded")
            else:
                then(f.result())

        loop.run_in_executor(_decoder(), make, True).add_done_callback(done)
