"""Pairs each copied request's production and shadow replies, whichever arrives first, and compares them.

Only copies in flight hold a reply (bounded by the sender's in-flight and backlog limits, by MAX_PAIRS and, when
given, by a memory budget shared with the rest of shadowing); the client's reply is never held back: what is kept
is a record of it. Noise is learned from
production answers alone. Mismatches go to the metrics, a bounded store (GET /diffs) and, if asked, a JSON-lines
report file.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import http

from ..budget import MemoryBudget, TimeBudget
from ..httpsyntax import FieldView, field_values
from ..metrics import Metrics
from .answer import Answer
from .building import OVER_BUDGET, ReplyBuilder
from .config import CompareConfig
from .diff import compare, costly
from .endpoints import EndpointNamer
from .judge import CountingLearner, Judge, JudgeConfig, fields_of
from .noise import request_key
from .ordered import CaptureOrder, Compared, Naming
from .reply import Reply
from .reportfile import ReportFile
from .result import Comparison, failed, skipped
from .store import MismatchStore, record_line

logger = logging.getLogger(__name__)

MAX_PAIRS = 20000  # a safety net: pairs normally end within the copy's timeout
PAIR_BYTES = 512  # what a held reply costs besides its body (headers, the record of the request)
# Reading a shadow's answer kept for comparison (instead of dropping it as read) costs the loop about 2 ms per MB
# (scripts/bench: bigjson against compare, 4.4 against 2.4 ms of CPU a request): charged to comparison's share.
READ_SECONDS_PER_BYTE = 2e-9
VARY = (b"authorization", b"cookie", b"accept")  # request headers whose values change production's answer
OFFLINE_PRINTS = 64 * 1024 * 1024  # bytes of noise prints a replay keeps by their content


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
    # Judged in the capture's order (`ordered`): the pair's place in it, what its endpoint is named from, and the
    # noise samples taken for it meanwhile.
    position: int | None = None
    naming: Naming | None = None
    samples: list[list[str]] = field(default_factory=list)

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
        self.builder = ReplyBuilder(TimeBudget(config.loop_share, clock), timer, config.body_limit)
        self.timer = timer
        self.learner = CountingLearner(headers=config.headers, budget=budget, parse_limit=config.parse_limit)
        self.namer = namer or EndpointNamer()
        self.judge = Judge(judge, budget, current=self.namer.current)
        self.store = MismatchStore(budget=budget)
        self.store.judgement = self.judge.summary
        self.pairs: OrderedDict[str, Pair] = OrderedDict()
        self.not_learned = 0  # production answers not learned from: comparison's share of the loop was spent
        self.report = ReportFile(report_path, config.report_max) if report_path else None
        self.order: CaptureOrder | None = None  # a replay's pairs, judged at the end in the capture's order

    @property
    def loop(self) -> TimeBudget:
        """Comparison's share of the event loop (the builder's, spent by every part of comparing)."""
        return self.builder.loop

    @property
    def decoding(self) -> int:
        return self.builder.decoding

    @property
    def closed(self) -> bool:
        return self.builder.closed

    def close(self) -> None:
        self.builder.closed = True
        if self.order is not None:
            self.order.close()
        if self.report is not None:
            self.report.close()
        for pair in self.pairs.values():
            self._release(pair)
        self.pairs.clear()
        self.judge.close()
        self.namer.close()
        self.learner.close()
        self.store.close()

    def expect(
        self,
        key: str,
        mapping: str,
        endpoint: str,
        summary: dict[str, Any],
        secondary: bool = False,
        position: int | None = None,
        naming: Naming | None = None,
    ) -> bool:
        """A copy of request `key` is about to be sent (and, with `secondary`, to the secondary too): True when its
        answers are to be compared, False when comparison's share of the event loop is spent (the pair is counted
        as skipped at once, and the copy is sent as any other, its answer read without being kept). In the
        capture's order (`in_capture_order`): `position` in the capture, and `naming` instead of `endpoint`."""
        if not self.loop.allows():
            pair = Pair(mapping, endpoint, summary, position=position, naming=naming)
            self._finish(pair, skipped(OVER_BUDGET, "budget"))
            return False
        self.pairs[key] = Pair(
            mapping,
            endpoint,
            summary,
            secondary_waiting=secondary,
            with_secondary=secondary,
            position=position,
            naming=naming,
        )
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
        self.builder.build(
            out.headers,
            out.body if size == len(out.body) else b"",
            lambda decode: Reply.of(status, fields, out.body, limit, size=size, sha256=sha256, decode=decode),
            lambda reply: self.shadow(key, self._named(reply, path), None, on_done),
            lambda why: self.shadow(key, None, why, on_done),
        )
        return True

    def in_capture_order(self, order: CaptureOrder) -> None:
        """Judge pairs at the end, in the capture's order (`ordered`): a replay's pairs then, from now on."""
        self.order = order

    def judge_in_order(self, pairs: Callable[[bool], Iterable[Compared]], sampled: bool = True) -> None:
        """Judge pairs compared in the capture's order (`ordered`; `pairs(replies)` reads them, with their replies or
        not), as each would have been judged as it came: its endpoint named, the judge's verdict, the counts, the
        store and the report. As noise is learned from the whole capture before a pair is judged, so are
        production's own variations: every noise sample is counted first, under its pair's endpoint as named at its
        place (by a namer of its own, which learns from the paths as the judging one does); and a pair that
        differed is compared again, with all the noise learned by now, when some was learned after it was compared.
        `sampled`: whether any pair has a sample."""
        if sampled:
            namer = EndpointNamer(self.namer.patterns, self.namer.many, self.namer.max_prefixes)
            try:
                for c in pairs(False):
                    endpoint = namer.name(c.naming[0], c.naming[1], FieldView(c.naming[2]))
                    for sample in c.samples:
                        self.judge.noise(c.mapping, endpoint, sample)
            finally:
                namer.close()
        for c in pairs(True):
            endpoint = self.namer.name(c.naming[0], c.naming[1], FieldView(c.naming[2]))
            result = c.result
            if c.production is not None and c.shadow is not None and self._learned_since(c):
                result = self._again(c.mapping, c.summary.get("path"), c.production, c.shadow)
            if result.result != "skipped":
                result = self.judge.candidate(c.mapping, endpoint, result)
            self._record(c.mapping, endpoint, c.summary, c.production, c.shadow, result, c.at)

    def _learned_since(self, c: Compared) -> bool:
        """Whether noise was learned for the pair's Mapping after it was compared (by any process: the sets only
        grow, and a process's is part of the first one's at the end, so the same size is the same set unless the
        set is full, when what it holds may be another process's)."""
        noise = self.learner.noise(c.mapping)
        return noise.full or len(noise) != c.noise

    def _again(self, mapping: str, path: str | None, production: Reply, shadow: Reply) -> Comparison:
        """A pair compared again with the noise learned since (its replies restored from the `Replies` file)."""
        try:
            return compare(
                self._named(production, path), self._named(shadow, path), self.config, self.learner.noise(mapping)
            )
        except Exception as e:  # as a pair's comparison failing when it came: this pair's alone
            logger.debug("shadow compare: error in a pair", exc_info=e)
            return failed(type(e).__name__)

    def offline(self) -> None:
        """A recorded capture is replayed, with no live production to keep fast: comparison takes what it needs.
        Answers met again (a capture's often repeat) are not parsed again for their noise print: the prints are
        kept by their content, up to OFFLINE_PRINTS bytes."""
        self.builder.loop = TimeBudget(float("inf"))
        self.learner.keep_prints(OFFLINE_PRINTS)

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
        vary = field_values(req.headers.fields, VARY)  # Headers.get of each, without its cost per field
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

        self.builder.build(
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
            self._sample(pair, changed)

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
        self.builder.build(
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
            self._sample(pair, [n for names in fields_of(noise) for n in names])
        result = compare(production, shadow, self.config, self.learner.noise(pair.mapping))
        if pair.position is None:  # else judged at the end, in the capture's order
            result = self.judge.candidate(pair.mapping, pair.endpoint, result)
        if measured:
            self.loop.spend(self.timer() - t)
        return result

    def _release(self, pair: Pair) -> None:
        if pair.held and self.budget is not None:
            self.budget.release(pair.held)
        pair.held = 0

    def _sample(self, pair: Pair, fields: list[str]) -> None:
        """A noise sample for the pair's endpoint: counted now, or with the pair at its place in the capture."""
        if pair.position is not None:
            pair.samples.append(fields)
        else:
            self.judge.noise(pair.mapping, pair.endpoint, fields)

    def _finish(self, pair: Pair, result: Comparison) -> None:
        self._release(pair)
        if pair.position is not None and pair.naming is not None and self.order is not None:
            # Compared again when judged, with the noise learned by then (a match stays one); the replies a stored
            # mismatch shows.
            kept = result.result in ("mismatch", "noise")
            self.order.add(
                Compared(
                    pair.position,
                    pair.mapping,
                    pair.naming,
                    pair.summary,
                    result,
                    time.time(),
                    pair.samples,
                    len(self.learner.noise(pair.mapping)) if kept else 0,
                    production=pair.production if kept else None,
                    shadow=pair.shadow if kept else None,
                )
            )
            # Pairs are expected in the capture's order: the first one still waiting bounds what can be written.
            first = next(iter(self.pairs.values()), None)
            self.order.release(first.position if first is not None else None)
        else:
            self._record(pair.mapping, pair.endpoint, pair.summary, pair.production, pair.shadow, result)
        pair.production = pair.shadow = None
        for cb in pair.on_done:
            cb(result)

    def _record(
        self,
        mapping: str,
        endpoint: str,
        summary: dict[str, Any],
        production: Reply | None,
        shadow: Reply | None,
        result: Comparison,
        at: float | None = None,
    ) -> None:
        try:
            self.metrics.record_compare(mapping, result.result, result.kinds, result.reason)
            record = self.store.add(mapping, endpoint, summary, production, shadow, result, at)
            if record is not None and self.report is not None:
                self.report.write(record_line(record))
        except Exception:  # the record of one pair must not stop the next
            logger.exception("shadow compare: cannot record a comparison")


def _reason(text: str | None, side: str) -> str:
    """The counted reason of a skipped pair: one of a few words, never text from traffic."""
    if text and text.startswith("overload (decoding)"):
        return "decoding"
    if text and text.startswith("error"):
        return "error"
    if text == OVER_BUDGET:
        return "budget"
    return side
