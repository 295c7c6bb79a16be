"""Noise: fields that vary between two production answers to the same request, learned from production alone."""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ..budget import MemoryBudget
from .fields import Path, Pattern, Trie, general, is_index, pointer
from .reply import NOT_JSON, Reply

Kind = Literal["status", "body", "header", "path"]

MAX_CHANGES = 64  # fields named per observation, as `diff.MAX_FIELDS` per comparison; the rest are counted


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


@dataclass(frozen=True, slots=True)
class Changes:
    """What differs between production's answer to a request and its previous answer to the same request, named
    as the diff names the fields of a comparison (`status`, `header <name>`, `body`, JSON pointers with `*` for an
    array index, a changed array as one field when its length or only its order changed), so that production's
    own variation and a comparison with the shadow can be counted field by field alike. At most MAX_CHANGES
    fields are named; `more`: how many others changed. Empty: the same answer again."""

    fields: tuple[str, ...] = ()
    more: int = 0


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

    def observe(self, mapping: str, key: str, reply: Reply) -> Changes | None:
        """Learn from production's answer `reply` to request `key` and keep its print as the latest. Returns how it
        differs from the previous answer to the same request (`Changes`; empty for the same answer again), or None
        when there is nothing to compare it with: no previous answer kept, or a 5xx answer (a failure is not
        non-determinism: it teaches nothing and is not kept). Linear in the body and its depth (see `_body`)."""
        if reply.status >= 500:
            return None
        if self.seen(mapping, key, reply):
            self.prints.move_to_end((mapping, key))  # the same bytes again: nothing changed, no need to look inside
            return Changes()
        headers = tuple(hash(reply.header(h)) for h in self.headers)
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

    def _learn(self, noise: NoiseSet, old: _Print, new: _Print) -> Changes:
        if old.status != new.status:
            noise.learn("status")
            return Changes(("status",))
        found = _Found()
        for name, a, b in zip(self.headers, old.headers, new.headers, strict=True):
            if a != b:
                noise.learn("header", name)
                found.put(f"header {name}")
        ob, nb = old.body, new.body
        if ob is None or nb is None:
            pass  # no detail kept of one of them: nothing to tell
        elif isinstance(ob, dict) and isinstance(nb, dict):
            _body(noise, ob, nb, found)
        elif ob != nb:
            noise.learn("body")
            found.put("body")
        return found.changes()


class _Found:
    """The fields an observation found changed, by general key, named (an O(depth) walk) only while fewer than
    MAX_CHANGES are named; the others are only counted."""

    __slots__ = ("named", "others")

    def __init__(self) -> None:
        self.named: dict[int | str, str] = {}  # by general key (a JSON field) or by name (the rest)
        self.others: set[int | str] = set()

    def add(self, gkey: int | str, name: Callable[[], str]) -> None:
        if gkey in self.named or gkey in self.others:
            return
        if len(self.named) < MAX_CHANGES:
            self.named[gkey] = name()
        else:
            self.others.add(gkey)

    def put(self, name: str) -> None:
        self.add(name, lambda: name)

    def changes(self) -> Changes:
        return Changes(tuple(self.named.values()), len(self.others))


def _is_leaf(v: int | str) -> bool:
    return not isinstance(v, str)  # containers are "{}" or "[]", leaves their hash


def _body(noise: NoiseSet, ob: dict[int, Node], nb: dict[int, Node], found: _Found) -> None:
    """Learn from two prints of JSON bodies into `noise`, and name in `found` what changed as the diff would name
    it between them: a field whose kind changed covers what is beneath it (`type`), an array of another length is
    one field (`array length`), as is an array of the same scalars in another order (`order only`).

    Linear: every node is looked at a bounded number of times (prints list a parent before its children, so one
    pass carries "beneath a changed kind" down); a field is named (walking up its parents) only when it is learned,
    each at most once per mapping, or among the first MAX_CHANGES of this observation."""
    exact, generalised = noise.exact_keys, noise.general_keys
    paths: dict[int, Path] = {}  # walked up once per node at most

    def path(nodes: dict[int, Node], k: int) -> Path:
        p = paths.get(k)
        if p is None:
            p = paths[k] = _path(nodes, k)
        return p

    def name(nodes: dict[int, Node], k: int) -> Callable[[], str]:
        return lambda: pointer(general(path(nodes, k)))

    under: set[int] = set()  # nodes beneath a field whose kind changed: the diff names that field only
    reordered: dict[int, list[int]] = {}  # array -> its elements whose scalar value changed
    for k, (parent, _, v, gk) in nb.items():
        was = ob.get(k)
        if was is None:
            if k != ROOT_KEY and parent in ob:  # where the difference starts
                if k not in exact and not noise.full:
                    exact.add(k)
                    noise.learn("path", path(nb, k))
                if parent not in under:
                    at = parent if nb[parent][2] == _ARRAY else k  # an element more: the array's length
                    found.add(nb[at][3], name(nb, at))
            continue
        if k != ROOT_KEY and parent in under:
            under.add(k)
        if was[2] == v:
            continue
        if gk not in generalised and not noise.full:
            generalised.add(gk)
            noise.learn("path", general(path(nb, k)))
        if k != ROOT_KEY and parent in under:
            continue
        if not (_is_leaf(v) and _is_leaf(was[2])):
            under.add(k)  # another kind of value: what was beneath is not compared on its own
            found.add(gk, name(nb, k))
        elif k != ROOT_KEY and nb[parent][2] == _ARRAY:
            reordered.setdefault(parent, []).append(k)  # named once it is known whether only the order changed
        else:
            found.add(gk, name(nb, k))
    for k, (parent, _, _, _) in ob.items():
        if k == ROOT_KEY or k in nb or parent not in nb:
            continue
        if k not in exact and not noise.full:
            exact.add(k)
            noise.learn("path", path(ob, k))
        if parent not in under:
            at, nodes = (parent, nb) if nb[parent][2] == _ARRAY else (k, ob)  # an element fewer: the array's length
            found.add(nodes[at][3], name(nodes, at))
    if reordered:
        _reordered(ob, nb, reordered, found, name)


def _reordered(
    ob: dict[int, Node],
    nb: dict[int, Node],
    changed: dict[int, list[int]],
    found: _Found,
    name: Callable[[dict[int, Node], int], Callable[[], str]],
) -> None:
    """Arrays with elements of another scalar value: one field when they hold the same scalars in another order
    (as `diff._order_only` decides), else each such element."""
    elements: dict[int, tuple[Counter[int | str], Counter[int | str]]] = {a: (Counter(), Counter()) for a in changed}
    for side, nodes in ((0, ob), (1, nb)):
        for k, (parent, _, v, _) in nodes.items():
            counts = elements.get(parent)
            if counts is not None and k != ROOT_KEY:
                counts[side][v] += 1
    for array, keys in changed.items():
        before, after = elements[array]
        if before == after and _ARRAY not in before and _OBJECT not in before:  # the same scalars, reordered
            found.add(nb[array][3], name(nb, array))
        else:
            for k in keys:
                found.add(nb[k][3], name(nb, k))
