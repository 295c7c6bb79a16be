"""Noise: fields that vary between two production answers to the same request, learned from production alone."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ..budget import MemoryBudget
from .fields import Path, Pattern, Trie, general, is_index
from .reply import NOT_JSON, Reply

Kind = Literal["status", "body", "header", "path"]

_MISSING: Any = object()


class NoiseSet:
    """Fields known to vary between two production answers to the same request, for one mapping. Bounded: once
    full, new fields are not learned (a noisy field then shows as a mismatch: loud rather than hidden)."""

    __slots__ = ("capacity", "status", "body", "headers", "paths", "trie", "exact_keys", "general_keys")

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self.status = False
        self.body = False  # the body compared as text or by hash
        self.headers: set[str] = set()  # lower-case names
        self.paths: set[Pattern] = set()  # exact paths and generalised ones (None for an array index)
        self.trie = Trie(wildcard_indices=True)  # `paths` again, for `covers` in O(depth) and walks in O(1) a node
        # Path keys (see `_flatten`) of fields already learned or tried: a print's changed fields are named (an
        # O(depth) walk up) only once each, so learning stays linear in the body.
        self.exact_keys: set[int] = set()
        self.general_keys: set[int] = set()

    def __len__(self) -> int:
        return self.status + self.body + len(self.headers) + len(self.paths)

    @property
    def full(self) -> bool:
        return len(self) >= self.capacity

    def learn(self, kind: Kind, value: Any = None) -> bool:
        """Learn a field: `status`, `body`, `header` (a lower-case name) or `path` (a pattern, None for any array
        index). Returns whether it was added (False when already known or full)."""
        if self._knows(kind, value) or self.full:
            return False
        if kind == "status":
            self.status = True
        elif kind == "body":
            self.body = True
        elif kind == "header":
            self.headers.add(value)
        else:
            self.paths.add(value)
            self.trie.add(value)
        return True

    def _knows(self, kind: Kind, value: Any) -> bool:
        if kind == "status":
            return self.status
        if kind == "body":
            return self.body
        if kind == "header":
            return value in self.headers
        return value in self.paths

    def covers(self, path: Path) -> bool:
        """A path is noise when it, or a field above it, was learned (exactly, or with any array index)."""
        return self.trie.covers(path)


def request_key(method: str, path_with_query: str, body: bytes, vary: Iterable[str] = ()) -> str:
    """Identity of a request for noise learning: same key, same expected answer. `vary`: values of request
    headers that change the answer (e.g. authorization, cookie, accept), so that two users' answers to the same
    URL are not mistaken for noise."""
    h = hashlib.sha256(method.upper().encode() + b"\0" + path_with_query.encode("utf-8", "surrogateescape"))
    for v in vary:
        h.update(b"\0" + v.encode("utf-8", "surrogateescape"))
    h.update(b"\0")
    h.update(body)
    return h.hexdigest()[:32]


_OBJECT, _ARRAY = "{}", "[]"  # fingerprint values of containers (leaves are ints)
ROOT_KEY = 0
MAX_DEPTH = 128  # a body nested deeper keeps no field detail (the diff compares such a subtree as one value)
NODE_BYTES = 256  # what one node of a print costs in memory (tracemalloc: ~241 bytes, rounded up)
PRINT_BYTES = 400  # what a print costs besides its nodes

# One node of a flattened body: (parent's key, segment, value hash or container marker, generalised key).
Node = tuple[int, str, int | str, int]


@dataclass(slots=True)
class _Print:
    """What is kept of a production answer: enough to tell which fields changed, not the answer itself."""

    status: int
    headers: tuple[int, ...]  # hashes of the compared headers' values
    body: dict[int, Node] | str | None  # JSON: path key -> node; else size:sha256; None: not kept
    nodes: int
    sent: tuple[int, str]  # size and sha256 of the body as sent ("" when unknown): an identical answer teaches nothing

    @property
    def bytes(self) -> int:
        return PRINT_BYTES + self.nodes * NODE_BYTES


def _flatten(doc: Any, max_nodes: int) -> dict[int, Node] | None:
    """Every node of a JSON document under a key that stands for its path: containers as markers, leaves as a
    hash (1 and 1.0 hash alike, true and 1 do not). A path is never built: a node's key is the hash of its
    parent's key and its segment, so the print is linear in the body however deep it is (a path is named, by
    walking up the parents, only when it is learned). None when it has more than `max_nodes` nodes or is nested
    deeper than MAX_DEPTH."""
    out: dict[int, Node] = {}
    stack: list[tuple[int, int, str, int, int, Any]] = [(ROOT_KEY, 0, "", ROOT_KEY, 0, doc)]
    while stack:
        key, parent, seg, gkey, depth, v = stack.pop()
        if len(out) + len(stack) + (len(v) if isinstance(v, dict | list) else 0) >= max_nodes or depth > MAX_DEPTH:
            return None  # before pushing a large container's children: the work stays within max_nodes
        if isinstance(v, dict):
            out[key] = (parent, seg, _OBJECT, gkey)
            stack.extend(
                (hash((key, k)), key, k, hash((gkey, None if is_index(k) else k)), depth + 1, w) for k, w in v.items()
            )
        elif isinstance(v, list):
            out[key] = (parent, seg, _ARRAY, gkey)
            # An index's general key is its parent's with a wildcard: every element shares it.
            stack.extend((hash((key, str(i))), key, str(i), hash((gkey, None)), depth + 1, w) for i, w in enumerate(v))
        else:
            out[key] = (parent, seg, hash((type(v) is bool, type(v) is str, v)), gkey)
    return out


def _path(nodes: dict[int, Node], key: int) -> Path:
    segs: list[str] = []
    for _ in range(MAX_DEPTH + 2):  # bounded: prints are at most MAX_DEPTH deep
        if key == ROOT_KEY:
            break
        parent, seg, _, _ = nodes[key]
        segs.append(seg)
        key = parent
    return tuple(reversed(segs))


class NoiseLearner:
    """Learns noise from production traffic only: when production answers the same request key twice with
    different values, those fields vary by themselves and are noise for that mapping. Nothing is ever sent.

    - A value that changed is learned generalised over array indices (`/items/3/ts` -> `/items/*/ts`): sibling
      elements are built by the same code. A field present in only one answer is learned exactly, at the point
      where it appears (`/items/10`), so a list that grew once does not silence every element.
    - A status change teaches `status` only (the two bodies are of different kinds); 5xx answers teach nothing
      and are not kept: a failure is not non-determinism.
    - Bodies that are not JSON, or over the body limit, teach `body` when their content's hash changes.
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
        self.prints: OrderedDict[tuple[str, str], _Print] = OrderedDict()  # (mapping, key), least recent first
        self.nodes = 0  # JSON nodes held by `prints`
        self.held = 0  # bytes of `prints` held in `budget`
        self.not_kept = 0  # prints refused by the memory budget
        self._noise: dict[str, NoiseSet] = {}

    def noise(self, mapping: str) -> NoiseSet:
        s = self._noise.get(mapping)
        if s is None:
            s = self._noise[mapping] = NoiseSet(self.max_noise)
        return s

    def seen(self, mapping: str, key: str, reply: Reply) -> bool:
        """Whether `reply` is production's same bytes again for this request (it teaches nothing, and is not
        parsed): the caller need not pay for its parse."""
        old = self.prints.get((mapping, key))
        return (
            old is not None
            and bool(reply.body_sha256)
            and old.sent == (reply.body_size, reply.body_sha256)
            and (old.status, old.headers) == (reply.status, tuple(hash(reply.header(h)) for h in self.headers))
        )

    def observe(self, mapping: str, key: str, reply: Reply) -> None:
        if reply.status >= 500:
            return
        if self.seen(mapping, key, reply):
            self.prints.move_to_end((mapping, key))  # the same bytes again: nothing changed, no need to look inside
            return
        headers = tuple(hash(reply.header(h)) for h in self.headers)
        new = self._fingerprint(reply, headers)
        old = self.prints.pop((mapping, key), None)
        if old is not None:
            self._drop(old)
            self._learn(self.noise(mapping), old, new)
        if self.budget is not None and not self.budget.take(new.bytes):
            self.not_kept += 1
            return
        self.prints[(mapping, key)] = new
        self.nodes += new.nodes
        self.held += new.bytes if self.budget is not None else 0
        while len(self.prints) > self.max_keys or self.nodes > self.node_budget:
            _, gone = self.prints.popitem(last=False)
            self._drop(gone)

    def _drop(self, p: _Print) -> None:
        self.nodes -= p.nodes
        if self.budget is not None:
            self.budget.release(p.bytes)
            self.held -= p.bytes

    def close(self) -> None:
        """Release every print's bytes (the learner is being replaced)."""
        for p in self.prints.values():
            self._drop(p)
        self.prints.clear()

    def _fingerprint(self, r: Reply, headers: tuple[int, ...]) -> _Print:
        small = r.body is not None and (self.parse_limit is None or len(r.body) <= self.parse_limit)
        doc = r.parsed() if small else NOT_JSON
        body: dict[int, Node] | str | None
        if doc is not NOT_JSON:
            body = _flatten(doc, self.max_nodes)
        else:
            size, sha = r.digest()
            body = f"{size}:{sha}" if sha else None
        nodes = len(body) if isinstance(body, dict) else 0
        return _Print(r.status, headers, body, nodes, (r.body_size, r.body_sha256))

    def _learn(self, noise: NoiseSet, old: _Print, new: _Print) -> None:
        if old.status != new.status:
            noise.learn("status")
            return
        for name, a, b in zip(self.headers, old.headers, new.headers, strict=True):
            if a != b:
                noise.learn("header", name)
        ob, nb = old.body, new.body
        if ob is None or nb is None:
            return
        if isinstance(ob, dict) and isinstance(nb, dict):
            # Linear: each changed field is named (walking up its parents) at most once per mapping.
            exact, generalised = noise.exact_keys, noise.general_keys
            for k, (parent, _, v, gk) in nb.items():
                if noise.full:
                    return
                was = ob.get(k)
                if was is None:
                    if k != ROOT_KEY and parent in ob and k not in exact:  # where the difference starts
                        exact.add(k)
                        noise.learn("path", _path(nb, k))
                elif was[2] != v and gk not in generalised:
                    generalised.add(gk)
                    noise.learn("path", general(_path(nb, k)))
            for k, (parent, _, _, _) in ob.items():
                if noise.full:
                    return
                if k not in nb and k != ROOT_KEY and parent in nb and k not in exact:
                    exact.add(k)
                    noise.learn("path", _path(ob, k))
        elif ob != nb:
            noise.learn("body")
