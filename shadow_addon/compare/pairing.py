"""Pairs each copied request's production and shadow replies, whichever arrives first, and compares them.

Only copies in flight hold a reply (bounded by the sender's in-flight and backlog limits, by MAX_PAIRS and, when
given, by a memory budget shared with the rest of shadowing); the client's reply is never held back: what is kept
is a record of it. Noise is learned from
production answers alone. Mismatches go to the metrics, a bounded store (GET /diffs) and, if asked, a JSON-lines
report file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

from mitmproxy import http

from ..budget import MemoryBudget, TimeBudget
from ..metrics import Metrics
from .answer import Answer
from .decode import codings, known_refused, off_loop
from .diff import CompareConfig, Comparison, compare, costly, failed, skipped
from .endpoints import EndpointNamer
from .judge import CountingLearner, Judge, JudgeConfig, fields_of
from .noise import request_key
from .reply import Reply, content_coding
from .store import MismatchStore, record_line

logger = logging.getLogger(__name__)

MAX_PAIRS = 20000  # a safety net: pairs normally end within the copy's timeout
PAIR_BYTES = 512  # what a held reply costs besides its body (headers, the record of the request)
OVER_BUDGET = "over the comparison's share of the event loop (shadow_compare_budget)"
# Reading a shadow's answer kept for comparison (instead of dropping it as read) costs the loop about 2 ms per MB
# (scripts/bench: bigjson against compare, 4.4 against 2.4 ms of CPU a request): charged to comparison's share.
READ_SECONDS_PER_BYTE = 2e-9
# Bodies that `decode.off_loop` names are decoded in one worker thread: one brotli window in memory at a time.
# Beyond MAX_DECODING waiting for it, the pair is skipped (a shadow answering new bombs faster than they decode).
MAX_DECODING = 16
_worker: ThreadPoolExecutor | None = None


def _decoder() -> ThreadPoolExecutor:
    global _worker
    if _worker is None:
        _worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow-decode")
    return _worker


@dataclass(slots=True)
class Pair:
    mapping: str  # the shadow Mapping
    endpoint: str
    summary: dict[str, Any]
    production: Reply | None = None
    production_failed: str | None = None
    shadow: Reply | None = None
    shadow_failed: str | None = None
    on_done: list[Callable[[Comparison], None]] = field(default_factory=list)
    held: int = 0  # bytes taken from the budget for the reply waiting for its other half
    secondary: Reply | None = None
    secondary_waiting: bool = False  # a copy went to the secondary and has not answered yet
    with_secondary: bool = False  # a copy went to the secondary

    @property
    def complete(self) -> bool:
        has_prod = self.production is not None or self.production_failed is not None
        has_shadow = self.shadow is not None or self.shadow_failed is not None
        return has_prod and has_shadow and not self.secondary_waiting


class Pairing:
    def __init__(
        self,
        metrics: Metrics,
        config: CompareConfig,
        report_path: str = "",
        budget: MemoryBudget | None = None,
        judge: JudgeConfig | None = None,
        namer: EndpointNamer | None = None,
        clock: Callable[[], float] = time.monotonic,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.metrics = metrics
        self.config = config
        self.budget = budget
        # What comparing takes of the event loop (building replies, learning, comparing), measured per pair.
        self.loop = TimeBudget(config.loop_share, clock)
        self.timer = timer
        self.learner = CountingLearner(headers=config.headers, budget=budget, parse_limit=config.parse_limit)
        self.namer = namer or EndpointNamer()
        self.judge = Judge(judge, budget, current=self.namer.current)
        self.store = MismatchStore(budget=budget)
        self.store.judgement = self.judge.summary
        self.decoding = 0  # replies being decoded in the worker thread
        self.closed = False
        self.pairs: OrderedDict[str, Pair] = OrderedDict()
        self.not_learned = 0  # production answers not learned from: comparison's share of the loop was spent
        self.report_path = report_path
        self._report: IO[str] | None = None
        self._report_size = 0
        if report_path:
            # Opened once; a line per mismatch is appended (small, and only on mismatches).
            self._report = open(report_path, "a", encoding="utf-8")  # noqa: SIM115
            self._report_size = self._report.tell()

    def close(self) -> None:
        self.closed = True  # decodings still in the worker thread end in nothing
        if self._report is not None:
            self._report.close()
            self._report = None
        for pair in self.pairs.values():
            self._release(pair)
        self.pairs.clear()
        self.judge.close()
        self.namer.close()
        self.learner.close()
        self.store.close()

    def expect(self, key: str, mapping: str, endpoint: str, summary: dict[str, Any], secondary: bool = False) -> bool:
        """A copy of request `key` is about to be sent (and, with `secondary`, to the secondary too): True when its
        answers are to be compared, False when comparison's share of the event loop is spent (the pair is counted
        as skipped at once, and the copy is sent as any other, its answer read without being kept)."""
        if not self.loop.allows():
            self._finish(Pair(mapping, endpoint, summary), skipped(OVER_BUDGET, "budget"))
            return False
        self.pairs[key] = Pair(mapping, endpoint, summary, secondary_waiting=secondary, with_secondary=secondary)
        while len(self.pairs) > MAX_PAIRS:
            _, old = self.pairs.popitem(last=False)
            self._finish(old, skipped("too many pending comparisons", "pending"))
        return True

    def shadow_wanted(self, key: str, length: int | None) -> bool:
        """The head of the shadow's answer to the copy of request `key` has arrived (`length`: its declared body
        size, None when not declared): whether its body is still to be kept for comparison. While comparison's
        share of the event loop allows, it is; past it, only when production's answer, in already, is as long (the
        two may be the same bytes, which compare at no cost). Otherwise the pair ends now, skipped as it would be
        once both answers were in, and the body is read without being kept, hashed or decoded."""
        pair = self.pairs.get(key)
        if pair is None:
            return False
        if pair.shadow is not None or pair.shadow_failed is not None or pair.production_failed is not None:
            return True  # decided otherwise already (production failed: skipped under that reason once both are in)
        if self.loop.allows():
            return True
        prod = pair.production
        if prod is not None and length is not None and prod.body_size == length:
            return True
        del self.pairs[key]
        self._finish(pair, skipped(OVER_BUDGET, "budget"))
        return False

    def shadow_answered(self, key: str, out: Answer, on_done: Callable[[Comparison], None] | None) -> bool:
        """The sender's outcome for the copy of request `key`; False when that request was not being compared."""
        if key not in self.pairs:
            return False
        if out.status is None:
            return self.shadow(key, None, out.reason, on_done)
        self.loop.spend(len(out.body) * READ_SECONDS_PER_BYTE)  # read and kept for this pair
        if on_done is not None:
            self.pairs[key].on_done.append(on_done)
            on_done = None
        # Decoded within the limit, else size and hash of the bytes as sent (production's likewise).
        limit, status = self.config.body_limit, out.status
        size, sha256 = out.body_size, out.body_sha256 or None
        fields = out.headers + out.trailers if out.trailers else out.headers  # gRPC's grpc-status is in the trailers
        path = self.pairs[key].summary.get("path")
        self._reply(
            out.headers,
            out.body if size == len(out.body) else b"",
            lambda decode: Reply.of(status, fields, out.body, limit, size=size, sha256=sha256, decode=decode),
            lambda reply: self.shadow(key, self._named(reply, path), None, on_done),
            lambda why: self.shadow(key, None, why, on_done),
        )
        return True

    def offline(self) -> None:
        """A recorded capture is replayed, with no live production to keep fast: comparison takes what it needs."""
        self.loop = TimeBudget(float("inf"))

    def production_answered(self, flow: http.HTTPFlow, mapping: str, learn_only: bool = False) -> None:
        """Production's answer to a copied request (`mapping`: the shadow Mapping), also a lesson in noise.
        `learn_only`: an answer only to learn from (no copy was sent for it)."""
        resp, req = flow.response, flow.request
        assert resp is not None
        if flow.id not in self.pairs and not learn_only:
            return  # not compared (the copy was not sent, or comparison's share was spent): nothing to learn either
        if resp.raw_content is None:  # a streamed response: nothing to compare against
            self.production(flow.id, None, "response streamed")
            return
        # Noise is learned from production's own answers to identical requests (the caller's identity included).
        vary = [req.headers.get(h, "") for h in ("authorization", "cookie", "accept")]
        key, status, fields, raw = flow.id, resp.status_code, resp.headers.fields, resp.raw_content
        if resp.trailers:
            fields = fields + resp.trailers.fields
        lesson = request_key(req.method, req.path, req.raw_content or b"", vary)

        def answered(reply: Reply) -> None:
            self._named(reply, req.path)
            try:
                self.learn(mapping, lesson, reply, key)
            except Exception as e:  # a fault in learning ends this pair, never the next ones
                self.fault(key, e)
                return
            self.production(key, reply)

        self._reply(
            fields,
            raw,
            lambda decode: Reply.of(status, fields, raw, self.config.body_limit, decode=decode),
            answered,
            lambda why: self.production(key, None, why),
        )

    def _named(self, reply: Reply, path: str | None) -> Reply:
        """With shadow_grpc_descriptors, a gRPC answer's fields are named by its method's output type."""
        names = self.config.names
        if names is not None and path:
            reply.schema = names.namer(path)
        return reply

    def _reply(
        self,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        make: Callable[[bool], Reply],
        then: Callable[[Reply], object],
        skip: Callable[[str], object],
    ) -> None:
        """Build a reply and hand it on: at once, or from the worker thread when decoding its body could hold the
        loop (`decode.off_loop`: a brotli stream with a large window), in which case the pair completes later."""
        limit = self.config.body_limit
        try:
            coding = content_coding(headers)
            decodes = bool(body) and len(body) <= limit and bool(codings(coding))
            if decodes and not known_refused(body, coding, limit) and not self.loop.allows():
                skip(OVER_BUDGET)  # decoding is comparison's work too
                return
            t = self.timer()  # building a reply (hashing, decoding) is comparison's work: measured
            if known_refused(body, coding, limit):
                reply = make(False)  # a bomb answered again: compared as sent, without looking it up twice
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

    def learn(self, mapping: str, request_key: str, reply: Reply, pair_key: str | None = None) -> None:
        """Learn noise from production's answer, if the per-second budget pays for its parse (its same bytes again
        cost nothing; the parse is kept on the reply, so the comparison does not pay for it twice)."""
        if reply.status < 500 and not self.learner.seen(mapping, request_key, reply):
            if reply.will_parse() and not self.loop.allows():
                self.not_learned += 1
                return
        t = self.timer()
        changed = self.learner.sample(mapping, request_key, reply)
        self.loop.spend(self.timer() - t)
        pair = self.pairs.get(pair_key) if pair_key is not None else None
        # Without a secondary, production answering a request again is the noise sample (with one, it is the
        # secondary's answer to the same request at the same time).
        if changed is not None and pair is not None and not pair.with_secondary:
            self.judge.noise(mapping, pair.endpoint, changed)

    def secondary_answered(self, key: str, out: Answer) -> None:
        """The secondary's answer to the copy of request `key` (or its failure: the pair is then judged without
        a noise sample)."""
        if key not in self.pairs:
            return
        if out.status is None:
            self.secondary(key, None)
            return
        limit, status = self.config.body_limit, out.status
        size, sha256 = out.body_size, out.body_sha256 or None
        self._reply(
            out.headers,
            out.body if size == len(out.body) else b"",
            lambda decode: Reply.of(status, out.headers, out.body, limit, size=size, sha256=sha256, decode=decode),
            lambda reply: self.secondary(key, reply),
            lambda why: self.secondary(key, None),
        )

    def secondary_wanted(self, key: str) -> bool:
        """Whether the copy of request `key` to the secondary is still worth sending: not when the shadow's copy has
        failed already (the pair is skipped), in which case the pair stops waiting for it."""
        pair = self.pairs.get(key)
        if pair is None:
            return False
        if pair.shadow_failed is not None:
            self.secondary(key, None)
            return False
        return True

    def secondary(self, key: str, reply: Reply | None) -> None:
        pair = self.pairs.get(key)
        if pair is None or not pair.secondary_waiting:
            return
        pair.secondary, pair.secondary_waiting = reply, False
        self._settle(key, pair, reply)

    def fault(self, key: str, e: BaseException) -> None:
        """An exception while handling the pair of `key`: it ends as `error`, its bytes released."""
        logger.debug("shadow compare: error in a pair", exc_info=e)
        pair = self.pairs.pop(key, None)
        if pair is not None:
            self._finish(pair, failed(type(e).__name__))

    def production(self, key: str, reply: Reply | None, failed: str | None = None) -> None:
        pair = self.pairs.get(key)
        if pair is None:
            return
        pair.production, pair.production_failed = reply, (failed if reply is None else None)
        if pair.production is None and pair.production_failed is None:
            pair.production_failed = "no production response"
        try:
            self._settle(key, pair, reply)
        except Exception as e:
            self.fault(key, e)

    def shadow(
        self, key: str, reply: Reply | None, failed: str | None, on_done: Callable[[Comparison], None] | None = None
    ) -> bool:
        """Record the shadow's side; returns False when the request was not being compared."""
        pair = self.pairs.get(key)
        if pair is None:
            return False
        pair.shadow, pair.shadow_failed = reply, ((failed or "failed") if reply is None else None)
        if on_done is not None:
            pair.on_done.append(on_done)
        try:
            self._settle(key, pair, reply)
        except Exception as e:
            self.fault(key, e)
        return True

    def _settle(self, key: str, pair: Pair, reply: Reply | None) -> None:
        """Compare a complete pair; else hold `reply` until its other half comes, if the budget allows."""
        if not pair.complete:
            n = PAIR_BYTES + len(reply.body) if reply is not None and reply.body is not None else 0
            if n and self.budget is not None:
                if not self.budget.take(n):
                    del self.pairs[key]  # not held: the other half, when it comes, is not compared
                    self._finish(pair, skipped("overload (memory budget)", "memory"))
                    return
                pair.held += n
            return
        if pair.shadow_failed is not None:
            result = skipped(f"shadow {pair.shadow_failed}", _reason(pair.shadow_failed, "shadow"))
        elif pair.production_failed is not None or pair.production is None or pair.shadow is None:
            result = skipped(f"production {pair.production_failed}", _reason(pair.production_failed, "production"))
        elif costly(pair.production, pair.shadow) and not self.loop.allows():
            result = skipped(OVER_BUDGET, "budget")
        else:
            result = self._compare(pair, pair.production, pair.shadow)
        del self.pairs[key]
        self._finish(pair, result)

    def _compare(self, pair: Pair, production: Reply, shadow: Reply) -> Comparison:
        """Compare and judge a pair (with the secondary's answer, a noise sample first). Identical bytes cost
        nothing worth measuring; the rest is charged to comparison's share of the loop, within which the noise
        sample is taken only while the share allows (else the pair is judged without it)."""
        sec = pair.secondary
        if sec is not None and costly(production, sec) and not self.loop.allows():
            sec = None
        measured = costly(production, shadow) or (sec is not None and costly(production, sec))
        t = self.timer() if measured else 0.0
        if sec is not None:
            noise = compare(production, sec, self.config)
            self.judge.noise(pair.mapping, pair.endpoint, [n for names in fields_of(noise) for n in names])
        result = compare(production, shadow, self.config, self.learner.noise(pair.mapping))
        result = self.judge.candidate(pair.mapping, pair.endpoint, result)
        if measured:
            self.loop.spend(self.timer() - t)
        return result

    def _release(self, pair: Pair) -> None:
        if pair.held and self.budget is not None:
            self.budget.release(pair.held)
        pair.held = 0

    def _finish(self, pair: Pair, result: Comparison) -> None:
        self._release(pair)
        try:
            self.metrics.record_compare(pair.mapping, result.result, result.kinds, result.reason)
            record = self.store.add(pair.mapping, pair.endpoint, pair.summary, pair.production, pair.shadow, result)
            if record is not None and self._report is not None:
                self._write_report(record_line(record))
        except Exception:  # the record of one pair must not stop the next
            logger.exception("shadow compare: cannot record a comparison")
        pair.production = pair.shadow = None
        for cb in pair.on_done:
            cb(result)

    def _write_report(self, line: str) -> None:
        """Append a line; past `report_max` bytes the file is moved to `<path>.1` (replacing the one before) and a
        new one begun, so the report takes at most twice `report_max` on disk."""
        assert self._report is not None
        size = len(line.encode("utf-8"))
        cap = self.config.report_max
        try:
            if cap and self._report_size + size > cap and self._report_size:
                self._report.close()
                os.replace(self.report_path, self.report_path + ".1")
                self._report = open(self.report_path, "a", encoding="utf-8")  # noqa: SIM115
                self._report_size = 0
            self._report.write(line)
            self._report.flush()
            self._report_size += size
        except OSError as e:
            logger.warning("shadow_compare_report: cannot write %s: %s; report disabled", self.report_path, e)
            self._report = None


def _reason(text: str | None, side: str) -> str:
    """The counted reason of a skipped pair: one of a few words, never text from traffic."""
    if text and text.startswith("overload (decoding)"):
        return "decoding"
    if text and text.startswith("error"):
        return "error"
    if text == OVER_BUDGET:
        return "budget"
    return side
