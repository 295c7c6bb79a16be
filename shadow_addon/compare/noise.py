"""Noise: fields that vary between two production answers to the same request, learned from production alone."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from ..budget import MemoryBudget
from .changes import Changes, Found, body_changes
from .noiseset import Kind, NoiseSet
from .prints import Node, Print, flatten
from .reply import NOT_JSON, Reply

__all__ = ["Changes", "NoiseLearner", "NoiseSet", "request_key"]


def request_key(method: str, path_with_query: str, body: bytes, vary: Iterable[str] = ()) -> str:
    """Identity of a request for noise learning: same key, same expected answer. `vary`: values of request
    headers that change the answer (e.g. authorization, cookie, accept), so that two users' answers to the same
    URL are not mistaken for noise."""
    parts = [method.upper().encode(), path_with_query.encode("utf-8", "surrogateescape")]
    parts += [v.encode("utf-8", "surrogateescape") for v in vary]
    parts.append(body)
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:32]


CONTENT_KEY_BYTES = 512  # what a kept print's key costs (`_content`: a hash in hex, a content-type)


def _content(r: Reply, headers: tuple[int, ...]) -> tuple[Any, ...] | None:
    """What decides an answer's print: its status, the compared headers, the bytes as sent (size and sha256), how
    they were decoded (Content-Encoding; whether, and to how many bytes) and how the body is read (Content-Type).
    None when the hash of the bytes is unknown, or a gRPC schema names the fields (it depends on the call)."""
    if not r.body_sha256 or r.schema is not None:
        return None
    body = None if r.body is None else len(r.body)
    coding, ctype = r.header("content-encoding"), r.header("content-type")
    return (r.status, headers, r.body_size, r.body_sha256, r.encoded, body, coding, ctype)


class NoiseLearner:
    """Learns noise from production traffic only: when production answers the same request key twice with
    different values, those fields vary by themselves and are noise for that mapping. Nothing is ever sent.

    - A value that changed is learned generalised over array indices (`/items/3/ts` -> `/items/*/ts`): sibling
      elements are built by the same code. A field present in only one answer is learned exactly, at the point
      where it appears (`/items/10`), so a list that grew once does not silence every element.
    - A status change teaches `status` only (the two bodies are of different kinds); 5xx answers teach nothing
      and are not kept: a failure is not non-determinism.
    - Bodies that are not JSON, or over the body limit, teach `body` when their content's hash changes.
    - `observe` also tells which fields changed since the request's previous answer, learned before or not
      (`Changes`): production's own variation, field by field, for a judgement of noise as a rate.
    - Bounded: at most `max_keys` request keys (least recently seen evicted first) holding at most `node_budget`
      JSON nodes in all; a body with more than `max_nodes` nodes keeps no field detail; `max_noise` fields per
      mapping.
    """

    def __init__(
        self,
        headers: Iterable[str] = ("content-type",),
        max_keys: int = 2048,
        max_noise: int = 256,
        max_nodes: int = 4096,
        node_budget: int = 200_000,
        budget: MemoryBudget | None = None,
        parse_limit: int | None = None,
    ) -> None:
        self.headers = tuple(h.lower() for h in headers)
        self.max_keys = max_keys
        self.max_noise = max_noise
        self.max_nodes = min(max_nodes, node_budget)
        self.node_budget = node_budget
        self.parse_limit = parse_limit  # a larger body is learned by its hash, not parsed
        self.budget = budget  # every print's bytes are held in it; a print that does not fit is not kept
        self.prints: OrderedDict[tuple[str, str], Print] = OrderedDict()  # (mapping, key), least recent first
        self.nodes = 0  # JSON nodes held by `prints`
        self.held = 0  # bytes of `prints` held in `budget`
        self.not_kept = 0  # prints refused by the memory budget
        self._noise: dict[str, NoiseSet] = {}
        self._by_content: dict[tuple[Any, ...], Print] | None = None  # `keep_prints`: prints by what they print
        self._by_content_bytes = 0
        self._by_content_limit = 0
        self.reused = 0  # prints taken from `_by_content` instead of parsing and flattening an answer again

    def keep_prints(self, limit: int) -> None:
        """Keep up to `limit` bytes of prints by the content they print (`_content`), so that an answer met again
        is not parsed and flattened again: a replay reads its capture twice (once to learn noise from all of it,
        once to compare), and a capture's answers often repeat. The prints kept stay until the learner is closed;
        past the limit, new ones are made as without this."""
        self._by_content = {} if limit > 0 else None
        self._by_content_limit = limit
        self._by_content_bytes = 0

    def noise(self, mapping: str) -> NoiseSet:
        s = self._noise.get(mapping)
        if s is None:
            s = self._noise[mapping] = NoiseSet(self.max_noise)
        return s

    def learned(self) -> dict[str, list[tuple[Kind, Any]]]:
        """The noise learned, per mapping (`NoiseSet.learned`): what another learner is taught with `teach`."""
        return {mapping: s.learned() for mapping, s in self._noise.items()}

    def teach(self, lessons: dict[str, list[tuple[Kind, Any]]]) -> None:
        """Learn the noise another learner learned (`learned`): a replay split over processes learns from all of its
        capture, each process from its own part."""
        for mapping, fields in lessons.items():
            s = self.noise(mapping)
            for kind, value in fields:
                s.learn(kind, value)

    def seen(self, mapping: str, key: str, reply: Reply) -> bool:
        """Whether `reply` is production's same bytes again for this request (it teaches nothing, and is not
        parsed): the caller need not pay for its parse."""
        old = self.prints.get((mapping, key))
        return (
            old is not None
            and bool(reply.body_sha256)
            and old.sent == (reply.body_size, reply.body_sha256)
            and (old.status, old.headers) == (reply.status, reply.header_hashes(self.headers))
        )

    def observe(self, mapping: str, key: str, reply: Reply) -> Changes | None:
        """Learn from production's answer `reply` to request `key` and keep its print as the latest. Returns how it
        differs from the previous answer to the same request (`Changes`; empty for the same answer again), or None
        when there is nothing to compare it with: no previous answer kept, or a 5xx answer (a failure is not
        non-determinism: it teaches nothing and is not kept). Linear in the body and its depth
        (see `changes.body_changes`)."""
        if reply.status >= 500:
            return None
        if self.seen(mapping, key, reply):
            self.prints.move_to_end((mapping, key))  # the same bytes again: nothing changed, no need to look inside
            return Changes()
        headers = reply.header_hashes(self.headers)
        new = self._fingerprint(reply, headers)
        old = self.prints.pop((mapping, key), None)
        changes = None
        if old is not None:
            self._drop(old)
            changes = self._learn(self.noise(mapping), old, new)
        if self.budget is not None and not self.budget.take(new.bytes):
            self.not_kept += 1
            return changes
        self.prints[(mapping, key)] = new
        self.nodes += new.nodes
        self.held += new.bytes if self.budget is not None else 0
        while len(self.prints) > self.max_keys or self.nodes > self.node_budget:
            _, gone = self.prints.popitem(last=False)
            self._drop(gone)
        return changes

    def _drop(self, p: Print) -> None:
        self.nodes -= p.nodes
        if self.budget is not None:
            self.budget.release(p.bytes)
            self.held -= p.bytes

    def close(self) -> None:
        """Release every print's bytes (the learner is being replaced)."""
        for p in self.prints.values():
            self._drop(p)
        self.prints.clear()
        if self._by_content is not None:
            self._by_content.clear()
            self._by_content_bytes = 0

    def _fingerprint(self, r: Reply, headers: tuple[int, ...]) -> Print:
        content = _content(r, headers) if self._by_content is not None else None
        if content is not None and self._by_content is not None:
            kept = self._by_content.get(content)
            if kept is not None:
                self.reused += 1
                return kept  # a print is never changed once made: shared by every answer it prints
        p = self._print(r, headers)
        cost = p.bytes + CONTENT_KEY_BYTES
        if content is not None and self._by_content is not None:
            if self._by_content_bytes + cost <= self._by_content_limit:
                self._by_content[content] = p
                self._by_content_bytes += cost
        return p

    def _print(self, r: Reply, headers: tuple[int, ...]) -> Print:
        small = r.body is not None and (self.parse_limit is None or len(r.body) <= self.parse_limit)
        doc = r.parsed() if small else NOT_JSON
        body: dict[int, Node] | str | None
        if doc is not NOT_JSON:
            body = flatten(doc, self.max_nodes)
        else:
            size, sha = r.digest()
            body = f"{size}:{sha}" if sha else None
        nodes = len(body) if isinstance(body, dict) else 0
        return Print(r.status, headers, body, nodes, (r.body_size, r.body_sha256))

    def _learn(self, noise: NoiseSet, old: Print, new: Print) -> Changes:
        if old.status != new.status:
            noise.learn("status")
            return Changes(("status",))
        found = Found()
        for name, a, b in zip(self.headers, old.headers, new.headers, strict=True):
            if a != b:
                noise.learn("header", name)
                found.put(f"header {name}")
        ob, nb = old.body, new.body
        if ob is None or nb is None:
            pass  # no detail kept of one of them: nothing to tell
        elif isinstance(ob, dict) and isinstance(nb, dict):
            body_changes(noise, ob, nb, found)
        elif ob != nb:
            noise.learn("body")
            found.put("body")
        return found.changes()
