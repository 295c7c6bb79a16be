"""The structural diff of two JSON documents (a walk without recursion, O(1) a node whatever its depth) and the
collector that sorts each difference into ignored, noisy or listed, rendering only what is listed."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from .fields import NOTHING, IgnoreRules, State, pointer
from .noiseset import NoiseSet
from .prints import MAX_DEPTH
from .render import MAX_LABEL, MISSING, clip, render
from .result import MATCH, Comparison, Difference, Result

MAX_LISTED = 20  # differences listed per comparison; the rest are counted
MAX_FIELDS = 64  # differences kept as (field, kind) per comparison, noisy ones included
MAX_NODES = 200_000  # nodes a walk visits per pair; beyond, the pair is skipped as too large


def _jtype(v: Any) -> str:
    t = type(v)
    if t is bool:
        return "boolean"
    if t is int or t is Decimal or t is float:
        return "number"
    if t is str:
        return "string"
    if v is None:
        return "null"
    return "object" if t is dict else "array"


class Collector:
    """Sorts each difference into ignored, noisy or listed, rendering only what is listed."""

    __slots__ = (
        "rules",
        "noise",
        "kinds",
        "diffs",
        "noisy",
        "more",
        "more_noisy",
        "fields",
        "more_fields",
        "more_noise",
    )

    def __init__(self, rules: IgnoreRules, noise: NoiseSet | None) -> None:
        self.rules, self.noise = rules, noise
        self.kinds: set[str] = set()
        self.diffs: list[str] = []
        self.noisy: list[str] = []
        self.fields: list[Difference] = []
        self.more = self.more_noisy = self.more_fields = self.more_noise = 0

    def _put(self, where: str, kind: str, name: Any, is_noise: bool, a: Any, b: Any, render_values: bool) -> None:
        """`name`: a label, or a linked path node whose pointer is built only if it is kept."""
        listed = len(self.diffs) < MAX_LISTED if not is_noise else len(self.noisy) < MAX_LISTED
        keep = len(self.fields) < MAX_FIELDS
        label = _label(name) if (listed or keep) else ""
        if keep:
            self.fields.append(Difference(label, kind, is_noise))
        else:
            self.more_fields += 1
            self.more_noise += is_noise
        if is_noise:
            if listed:
                self.noisy.append(label)
            else:
                self.more_noisy += 1
            return
        self.kinds.add(where)
        if not listed:
            self.more += 1
            return
        if render_values:
            a, b = render(a), render(b)
        self.diffs.append(f"{label}: {a} -> {b}")

    def status(self, a: int, b: int) -> None:
        # A shadow failing where production did not is never written off as noise.
        noise = self.noise is not None and self.noise.status and not (b >= 500 > a)
        self._put("status", "status", "status", noise, a, b, False)

    def header(self, name: str, a: str | None, b: str | None) -> None:
        noise = self.noise is not None and name in self.noise.headers
        self._put("header", "header", f"header {name}", noise, _text(a), _text(b), False)

    def body(self, a: str, b: str) -> None:
        self._put("body", "body", "body", self.noise is not None and self.noise.body, a, b, False)

    def path(self, node: Any, kind: str, noise: bool, a: Any, b: Any, values: bool = True) -> None:
        """A JSON difference at a linked path node (see `walk`); ignore rules were applied by the walk. `values`:
        `a` and `b` are JSON values to render (else text as shown)."""
        self._put("body", kind, node, noise, a, b, values)

    def result(self) -> Comparison:
        if not (self.kinds or self.diffs or self.noisy or self.fields or self.more_fields or self.more_noise):
            return MATCH  # the common answer, made once
        if self.more:
            self.diffs.append(f"... and {self.more} more")
        if self.more_noisy:
            self.noisy.append(f"... and {self.more_noisy} more")
        result: Result = "mismatch" if self.kinds else "noise" if self.noisy else "match"
        fields = tuple(self.fields)
        return Comparison(
            result, frozenset(self.kinds), self.diffs, self.noisy, fields, self.more_fields, more_noise=self.more_noise
        )


def _label(name: Any) -> str:
    if isinstance(name, str):
        return clip(name, MAX_LABEL)
    segs: list[str] = []
    node = name
    while node is not None:  # at most MAX_DEPTH + 1 links
        node, seg = node
        segs.append(seg)
    return clip(pointer(reversed(segs), MAX_LABEL), MAX_LABEL)


def _text(s: str | None) -> str:
    return "missing" if s is None else clip(s)


def _same(a: Any, b: Any) -> bool:
    # JSON semantics: 1 == 1.0, but true is not 1 (Python's bool is an int).
    return a == b and (type(a) is bool) == (type(b) is bool)


def _scalar_key(v: Any) -> Any:
    return (type(v) is bool, type(v) is str, v)


def _order_only(x: list[Any], y: list[Any]) -> bool:
    """Whether two lists of scalars of the same length hold the same elements in another order."""
    for v in x:
        if isinstance(v, dict | list):
            return False
    for v in y:
        if isinstance(v, dict | list):
            return False
    return Counter(map(_scalar_key, x)) == Counter(map(_scalar_key, y))


class TooLarge(Exception):
    """A walk reached MAX_NODES."""


def walk(a: Any, b: Any, out: Collector, max_nodes: int | None = None) -> None:
    """Structural diff of two JSON documents, in document order, without recursion. Equal leaves of the same
    type are skipped where they are met; paths are linked (parent, segment) nodes, made pointers only when a
    difference is kept; ignore rules and noise are trie states carried down, so a node costs O(1) whatever its
    depth. Raises TooLarge after `max_nodes` nodes."""
    max_nodes = MAX_NODES if max_nodes is None else max_nodes
    rules = out.rules.trie
    if rules.covers(()):
        return  # the whole document is ignored
    noise_trie = out.noise.trie if out.noise is not None else None
    n_start = noise_trie.start() if noise_trie is not None else NOTHING
    if noise_trie is not None and n_start and noise_trie.covers(()):
        if not same_tree(a, b):
            out.path(None, leaf_kind(a, b), True, a, b)
        return
    # (path node, production's value, shadow's value, depth, ignore state, noise state, covered by noise)
    stack: list[tuple[Any, Any, Any, int, State, State, bool]] = [(None, a, b, 0, rules.start(), n_start, False)]
    push = stack.append
    visited = 0
    while stack:
        node, x, y, depth, ist, nst, noisy = stack.pop()
        visited += 1
        if visited > max_nodes:
            raise TooLarge
        tx, ty = type(x), type(y)
        if x is MISSING or y is MISSING:
            out.path(node, "extra" if x is MISSING else "missing", noisy, x, y)
            continue
        if tx is not ty and not (_jtype(x) == _jtype(y) == "number"):
            out.path(node, "type", noisy, x, y)
            continue
        if tx is not dict and tx is not list:
            if not _same(x, y):
                out.path(node, "value", noisy, x, y)
            continue
        if depth >= MAX_DEPTH or noisy:
            # Too deep to go on node by node, or all noise below: one value (compared at C speed).
            if not same_tree(x, y):
                out.path(node, "value", noisy, x, y)
            continue
        children: list[tuple[str, Any, Any]] = []
        if tx is dict:
            for k, v in x.items():
                w = y.get(k, MISSING)
                if type(v) is not type(w) or type(v) is dict or type(v) is list or v != w:
                    children.append((k, v, w))
            for k, w in y.items():
                if k not in x:
                    children.append((k, MISSING, w))
        else:
            n, m = len(x), len(y)
            if n != m:
                out.path(node, "array length", noisy, f"array length {n}", str(m), values=False)
            elif _order_only(x, y):
                # Arrays are walked whether equal or not: equal scalars in the same order are no difference.
                if not all(map(_same, x, y)):
                    out.path(node, "order only", noisy, x, y)
                continue
            for i in range(min(n, m)):
                v, w = x[i], y[i]
                if type(v) is not type(w) or type(v) is dict or type(v) is list or v != w:
                    children.append((str(i), v, w))
        for seg, v, w in reversed(children):
            ist2, ignored = rules.step(ist, seg) if ist else (NOTHING, False)
            if ignored:
                continue
            nst2, covered = noise_trie.step(nst, seg) if (nst and noise_trie is not None) else (NOTHING, False)
            push(((node, seg), v, w, depth + 1, ist2, nst2, covered))


def leaf_kind(a: Any, b: Any) -> str:
    return "value" if _jtype(a) == _jtype(b) else "type"


def same_tree(a: Any, b: Any) -> bool:
    """Equality of two JSON values at C speed, where `true == 1` is possible only if either holds a boolean."""
    if a != b:
        return False
    return not (_has_bool(a) or _has_bool(b)) or _tree_same_types(a, b)


def _has_bool(v: Any) -> bool:
    stack = [v]
    while stack:
        x = stack.pop()
        if type(x) is bool:
            return True
        if type(x) is dict:
            stack.extend(x.values())
        elif type(x) is list:
            stack.extend(x)
    return False


def _tree_same_types(a: Any, b: Any) -> bool:
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if (type(x) is bool) != (type(y) is bool):
            return False
        if type(x) is dict and type(y) is dict:
            stack.extend((v, y[k]) for k, v in x.items())
        elif type(x) is list and type(y) is list:
            stack.extend(zip(x, y, strict=True))
    return True
