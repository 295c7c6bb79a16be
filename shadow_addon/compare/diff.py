"""Production vs shadow answers, field by field, with ignore rules and learned noise.

Pure: no I/O. It runs on mitmproxy's event loop, so every pair's work is bounded: each body is parsed at most once
(cached on its `Reply`) and only up to `CompareConfig.parse_limit` bytes, a walk visits at most MAX_NODES nodes
and goes MAX_DEPTH deep (a deeper subtree is compared as one value), ignore rules and noise are tries stepped
once per node, and values and labels are rendered only for the few listed differences, clipped as they are
written (never a whole value dumped to keep its first characters).

Differences are named by kind: `value` (same JSON type, other value), `type`, `missing` (in production's answer
only), `extra` (in the shadow's only), `array length`, `order only` (the same elements in another order);
`status`, `header` and `body` (a body compared as text or bytes) for the rest of the answer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import unquote

from ..grpcwire import code_label, code_name
from .descriptors import Descriptors
from .descriptors import load as load_descriptors
from .fields import NOTHING, IgnoreRules, State, is_header_name, parse_ignore, pointer
from .noise import MAX_DEPTH, NoiseSet
from .reply import BODY_LIMIT, NOT_JSON, Reply

MAX_LISTED = 20  # differences listed per comparison; the rest are counted
MAX_FIELDS = 64  # differences kept as (field, kind) per comparison, noisy ones included
MAX_VALUE = 80  # characters of one rendered value
MAX_LABEL = 200  # characters of one field's label (a JSON pointer)
MAX_NODES = 200_000  # nodes a walk visits per pair; beyond, the pair is skipped as too large
PARSE_LIMIT = 256 * 1024  # bytes of a body parsed as JSON per pair; a larger body is compared as bytes
LOOP_SHARE = 0.05  # the share of the event loop's time comparison may take, by default
REPORT_MAX = 64 * 1024 * 1024  # bytes of the report file before it is moved aside, by default
ELLIPSIS = "..."

Result = Literal["match", "mismatch", "noise", "skipped", "error"]
KINDS = ("value", "type", "missing", "extra", "array length", "order only", "status", "header", "body")

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class CompareConfig:
    """What to compare. Validated on construction: a bad entry raises ValueError with a one-line message."""

    headers: tuple[str, ...] = ("content-type",)
    ignore: tuple[str, ...] = ()
    body_limit: int = BODY_LIMIT
    descriptors: str = ""  # a FileDescriptorSet file: gRPC fields by name instead of number
    parse_limit: int = PARSE_LIMIT  # bytes of one body parsed as JSON; larger ones compare as bytes
    loop_share: float = LOOP_SHARE  # of the event loop's time, for comparing; past it pairs are skipped
    report_max: int = REPORT_MAX  # bytes of the report file before it is rotated; 0: unbounded
    rules: IgnoreRules = field(init=False, repr=False, compare=False)
    names: Descriptors | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = []
        for h in self.headers:
            if not is_header_name(h.strip()):
                raise ValueError(f"compared header {h!r} is not a header name")
            names.append(h.strip().lower())
        for name in ("body_limit", "parse_limit", "report_max"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name.replace('_', ' ')} must be 0 or more bytes, got {getattr(self, name)}")
        if not 0 <= self.loop_share <= 1:
            raise ValueError(f"the comparison's share of the event loop must be 0% to 100%, got {self.loop_share:.0%}")
        object.__setattr__(self, "headers", tuple(dict.fromkeys(names)))
        object.__setattr__(self, "ignore", tuple(self.ignore))
        object.__setattr__(self, "rules", parse_ignore(self.ignore))
        object.__setattr__(self, "names", load_descriptors(self.descriptors) if self.descriptors else None)


@dataclass(frozen=True, slots=True)
class Difference:
    """One differing field: its name as in the diff text (`status`, `header etag`, `body`, a JSON pointer), its
    kind (see KINDS), and whether learned noise covers it."""

    field: str
    kind: str
    noise: bool = False


@dataclass(frozen=True, slots=True)
class Comparison:
    """match: nothing differs; noise: only known-noisy fields differ; mismatch: something else differs (`kinds`
    says where: status, header, body); skipped: nothing to compare (the shadow failed, or a bound was reached);
    error: the comparison itself failed. `diffs`: one line per non-noise difference (at most MAX_LISTED, then
    "... and N more"); `noisy`: the names of the noisy fields that differed; `differences`: the first MAX_FIELDS
    differences with their kinds (`more_fields`: how many more there were, `more_noise` of them in noise)."""

    result: Result
    kinds: frozenset[str] = frozenset()
    diffs: list[str] = field(default_factory=list)
    noisy: list[str] = field(default_factory=list)
    differences: tuple[Difference, ...] = ()
    more_fields: int = 0
    reason: str = ""  # skipped: why, in one word of a fixed few (a metric label); error: "error"
    more_noise: int = 0  # of `more_fields`, those in learned noise


def skipped(text: str, reason: str = "other") -> Comparison:
    """A pair not compared: `text` says why in the diff text, `reason` counts it (shadow, production, budget,
    memory, pending, decoding, size, error, other)."""
    return Comparison("skipped", diffs=[f"skipped: {clip(text, MAX_LABEL)}"], reason=reason)


def failed(text: str) -> Comparison:
    """A pair whose comparison raised: counted as `error`."""
    return Comparison("error", diffs=[f"error: {clip(text, MAX_LABEL)}"], reason="error")


def clip(text: str, limit: int = MAX_VALUE) -> str:
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


def _json_string(s: str, limit: int) -> str:
    import json

    return json.dumps(s[:limit], ensure_ascii=False)


def render(v: Any, limit: int = MAX_VALUE) -> str:
    """A JSON value as compact JSON text, clipped to `limit` characters with an ellipsis. Written piece by piece
    and stopped once over the limit: the cost is bounded by `limit`, not by the value's size."""
    if v is _MISSING:
        return "missing"
    out: list[str] = []
    size = 0
    stack: list[Any] = [v]
    while stack and size <= limit:
        x = stack.pop()
        if isinstance(x, _Token):
            piece = x.text
        elif x is None:
            piece = "null"
        elif x is True:
            piece = "true"
        elif x is False:
            piece = "false"
        elif isinstance(x, str):
            piece = _json_string(x, limit + 1)
        elif isinstance(x, int | float | Decimal):
            piece = str(x)
        elif isinstance(x, dict):
            piece = "{"
            items: list[Any] = []
            for i, (k, w) in enumerate(x.items()):
                if i * 2 > limit:
                    items.append(_Token(","))  # there is more than fits: the clip marks it
                    break
                items.extend((_Token("," if i else ""), _Token(_json_string(k, limit + 1) + ":"), w))
            stack.append(_Token("}"))
            stack.extend(reversed(items))
        elif isinstance(x, list):
            piece = "["
            elems: list[Any] = []
            for i, w in enumerate(x):
                if i * 2 > limit:
                    elems.append(_Token(","))
                    break
                elems.extend((_Token("," if i else ""), w))
            stack.append(_Token("]"))
            stack.extend(reversed(elems))
        else:
            piece = clip(repr(x), limit + 1)
        out.append(piece)
        size += len(piece)
    return clip("".join(out) + ("" if not stack else ELLIPSIS * 2), limit)


class _Token:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


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


class _Collector:
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
        """A JSON difference at a linked path node (see `_walk`); ignore rules were applied by the walk. `values`:
        `a` and `b` are JSON values to render (else text as shown)."""
        self._put("body", kind, node, noise, a, b, values)

    def result(self) -> Comparison:
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
    return clip(pointer(reversed(segs)), MAX_LABEL)


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


def _walk(a: Any, b: Any, out: _Collector, max_nodes: int | None = None) -> None:
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
        if not _same_tree(a, b):
            out.path(None, _leaf_kind(a, b), True, a, b)
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
        if x is _MISSING or y is _MISSING:
            out.path(node, "extra" if x is _MISSING else "missing", noisy, x, y)
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
            if not _same_tree(x, y):
                out.path(node, "value", noisy, x, y)
            continue
        children: list[tuple[str, Any, Any]] = []
        if tx is dict:
            for k, v in x.items():
                w = y.get(k, _MISSING)
                if type(v) is not type(w) or type(v) is dict or type(v) is list or v != w:
                    children.append((k, v, w))
            for k, w in y.items():
                if k not in x:
                    children.append((k, _MISSING, w))
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


def _leaf_kind(a: Any, b: Any) -> str:
    return "value" if _jtype(a) == _jtype(b) else "type"


def _same_tree(a: Any, b: Any) -> bool:
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


def _first_line(a: str, b: str) -> tuple[str, str]:
    """The first differing line of two different texts (lines end at \\n; a \\r stays part of its line, so
    other line endings are a difference), found by halving at C speed rather than a loop over the lines."""
    la, lb = a.split("\n"), b.split("\n")
    lo, hi = 0, min(len(la), len(lb))  # la[:lo] == lb[:lo]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if la[lo:mid] == lb[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    x = render(la[lo][: MAX_VALUE + 1]) if lo < len(la) else "missing"
    y = render(lb[lo][: MAX_VALUE + 1]) if lo < len(lb) else "missing"
    return f"line {lo + 1}: {x}", y


def _digest(size: int, sha256: str) -> str:
    return f"{size} bytes sha256 {sha256[:12] or '?'}.."


def _compare_body(p: Reply, s: Reply, out: _Collector, parse_limit: int) -> None:
    if p.body is not None and s.body is not None:
        if p.body == s.body:
            return
        small = len(p.body) <= parse_limit and len(s.body) <= parse_limit
        pj = p.parsed() if small else NOT_JSON
        sj = s.parsed() if small and pj is not NOT_JSON else NOT_JSON
        if pj is not NOT_JSON and sj is not NOT_JSON:
            try:
                # Without booleans Python's == is JSON equality (only true == 1 sets them apart): a C-speed match.
                if not (pj == sj and _no_bools(p.body) and _no_bools(s.body)):
                    _walk(pj, sj, out)
                return
            except RecursionError:  # == on a subtree nested deeper than Python's C stack allows: bytes decide
                out.body(_digest(*p.digest()), _digest(*s.digest()))
                return
        # Not JSON on both sides: bytes decide. Text (decoded strictly by a text charset) only names the line.
        ta, tb = p.text(), s.text()
        if ta is not None and tb is not None and ta != tb:
            out.body(*_first_line(ta, tb))
        elif ta is not None and tb is not None:
            out.body("the same text in other bytes: " + _digest(*p.digest()), _digest(*s.digest()))
        else:
            out.body(_digest(*p.digest()), _digest(*s.digest()))
        return
    # Over the limit, or not decodable within it, on at least one side: the size and hash of both answers as sent
    # decide (sizes alone when a hash is unknown), so a decoded side is never weighed against an encoded one.
    hashes_agree = p.body_sha256 == s.body_sha256 or not p.body_sha256 or not s.body_sha256
    if p.body_size != s.body_size or not hashes_agree:
        out.body(_digest(p.body_size, p.body_sha256), _digest(s.body_size, s.body_sha256))


def _compare_grpc(p: Reply, s: Reply, out: _Collector) -> None:
    """A gRPC call's status is its grpc-status (a failed call is HTTP 200): compared as the status, never noise;
    grpc-message with it."""
    pg, sg = p.header("grpc-status"), s.header("grpc-status")
    if pg is None and sg is None:
        return
    if pg != sg:
        out._put("status", "status", "grpc-status", False, _grpc_code(pg), _grpc_code(sg), False)
    # Percent-decoded as the protocol sends it; empty is no message (grpcio sends an empty one with OK).
    pm, sm = unquote(p.header("grpc-message") or "") or None, unquote(s.header("grpc-message") or "") or None
    if pm != sm and "grpc-message" not in out.rules.headers:
        out.header("grpc-message", pm, sm)


def _grpc_code(v: str | None) -> str:
    return "missing" if v is None else f"{v} ({code_name(code_label(v))})"


def _no_bools(body: bytes) -> bool:
    return b"true" not in body and b"false" not in body


def costly(production: Reply, shadow: Reply) -> bool:
    """Whether comparing this pair means more than comparing bytes: parsing or decoding a body (what the
    comparison's share of the event loop pays for). False when the bodies are the same bytes or one is not kept."""
    p, s = production.body, shadow.body
    return p is not None and s is not None and p != s


def compare(production: Reply, shadow: Reply, config: CompareConfig, noise: NoiseSet | None = None) -> Comparison:
    """Compare the shadow's answer with production's: status, the configured headers, the body."""
    out = _Collector(config.rules, noise)
    if production.status != shadow.status:
        out.status(production.status, shadow.status)
    _compare_grpc(production, shadow, out)
    for name in config.headers:
        if name in config.rules.headers:
            continue
        a, b = production.header(name), shadow.header(name)
        if a != b:
            out.header(name, a, b)
    try:
        _compare_body(production, shadow, out, config.parse_limit)
    except TooLarge:
        return skipped(f"over {MAX_NODES} JSON nodes", "size")
    return out.result()
