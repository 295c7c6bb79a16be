"""Noise: fields that vary between two production answers to the same request, learned from production alone."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from .fields import Path, Pattern, general, is_index
from .reply import NOT_JSON, Reply

Kind = Literal["status", "body", "header", "path"]

_MISSING: Any = object()


class NoiseSet:
    """Fields known to vary between two production answers to the same request, for one mapping. Bounded: once
    full, new fields are not learned (a noisy field then shows as a mismatch: loud rather than hidden)."""

    __slots__ = ("capacity", "status", "body", "headers", "paths")

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self.status = False
        self.body = False  # the body compared as text or by hash
        self.headers: set[str] = set()  # lower-case names
        self.paths: set[Pattern] = set()  # exact paths and generalised ones (None for an array index)

    def __len__(self) -> int:
        return self.status + self.body + len(self.headers) + len(self.paths)

    def learn(self, kind: Kind, value: Any = None) -> bool:
        """Learn a field: `status`, `body`, `header` (a lower-case name) or `path` (a pattern, None for any one
        segment). Returns whether it was added (False when already known or full)."""
        if self._knows(kind, value) or len(self) >= self.capacity:
            return False
        if kind == "status":
            self.status = True
        elif kind == "body":
            self.body = True
        elif kind == "header":
            self.headers.add(value)
        else:
            self.paths.add(value)
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
        paths = self.paths
        if not paths:
            return False
        if () in paths:
            return True
        pattern: Pattern = ()
        for i, seg in enumerate(path):
            pattern += (None if is_index(seg) else seg,)
            if pattern in paths or path[: i + 1] in paths:
                return True
        return False


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


@dataclass(slots=True)
class _Print:
    """What is kept of a production answer: enough to tell which fields changed, not the answer itself."""

    status: int
    headers: tuple[int, ...]  # hashes of the compared headers' values
    body: dict[Path, int | str] | str | None  # JSON: path -> value hash; else size:sha256; None: not kept
    nodes: int
    sent: tuple[int, str]  # size and sha256 of the body as sent ("" when unknown): an identical answer teaches nothing


def _flatten(doc: Any, max_nodes: int) -> dict[Path, int | str] | None:
    """Every node of a JSON document: containers as markers, leaves as a hash (1 and 1.0 hash alike, true and 1
    do not). None when it has more than `max_nodes` nodes. Iterative: depth is bounded only by the parser."""
    out: dict[Path, int | str] = {}
    stack: list[tuple[Path, Any]] = [((), doc)]
    while stack:
        path, v = stack.pop()
        if len(out) + len(stack) + (len(v) if isinstance(v, dict | list) else 0) >= max_nodes:
            return None  # before pushing a large container's children: the work stays within max_nodes
        if isinstance(v, dict):
            out[path] = _OBJECT
            stack.extend((path + (k,), w) for k, w in v.items())
        elif isinstance(v, list):
            out[path] = _ARRAY
            stack.extend((path + (str(i),), w) for i, w in enumerate(v))
        else:
            out[path] = hash((type(v) is bool, type(v) is str, v))
    return out


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
    ) -> None:
        self.headers = tuple(h.lower() for h in headers)
        self.max_keys = max_keys
        self.max_noise = max_noise
        self.max_nodes = min(max_nodes, node_budget)
        self.node_budget = node_budget
        self.prints: OrderedDict[tuple[str, str], _Print] = OrderedDict()  # (mapping, key), least recent first
        self.nodes = 0  # JSON nodes held by `prints`
        self._noise: dict[str, NoiseSet] = {}

    def noise(self, mapping: str) -> NoiseSet:
        s = self._noise.get(mapping)
        if s is None:
            s = self._noise[mapping] = NoiseSet(self.max_noise)
        return s

    def observe(self, mapping: str, key: str, reply: Reply) -> None:
        if reply.status >= 500:
            return
        old = self.prints.get((mapping, key))
        headers = tuple(hash(reply.header(h)) for h in self.headers)
        if (
            old is not None
            and reply.body_sha256
            and old.sent == (reply.body_size, reply.body_sha256)
            and (old.status, old.headers) == (reply.status, headers)
        ):
            self.prints.move_to_end((mapping, key))  # the same bytes again: nothing changed, no need to look inside
            return
        new = self._fingerprint(reply, headers)
        old = self.prints.pop((mapping, key), None)
        if old is not None:
            self.nodes -= old.nodes
            self._learn(self.noise(mapping), old, new)
        self.prints[(mapping, key)] = new
        self.nodes += new.nodes
        while len(self.prints) > self.max_keys or self.nodes > self.node_budget:
            _, gone = self.prints.popitem(last=False)
            self.nodes -= gone.nodes

    def _fingerprint(self, r: Reply, headers: tuple[int, ...]) -> _Print:
        doc = r.parsed()
        body: dict[Path, int | str] | str | None
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
            for path, v in nb.items():
                was = ob.get(path, _MISSING)
                if was is _MISSING:
                    if path[:-1] in ob:  # where the difference starts; its children are covered by it
                        noise.learn("path", path)
                elif was != v:
                    noise.learn("path", general(path))
            for path in ob:
                if path not in nb and path[:-1] in nb:
                    noise.learn("path", path)
        elif ob != nb:
            noise.learn("body")
