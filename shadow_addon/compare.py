"""Production vs shadow responses, field by field, with noise learned from production alone.

Pure: no I/O (the clock is read only to stamp stored mismatches, and can be passed in). It runs on mitmproxy's
event loop for every compared request, so each body is parsed at most once (cached on its `Reply`), every walk
is linear in the body, and values are rendered only for the few differences that are listed.

Fields are named as in the diff text: `status`, `header <name>`, `body` (a body compared as text or by hash),
and RFC 6901 JSON pointers for the fields of JSON bodies (`(root)` for the whole document).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

BODY_LIMIT = 1024 * 1024
MAX_LISTED = 20  # differences listed per comparison; the rest are counted
MAX_VALUE = 80  # characters of one rendered value
PREVIEW = 2048  # bytes of each body kept with a stored mismatch
ROOT = "(root)"

Path = tuple[str, ...]
Pattern = tuple[str | None, ...]  # None: any one segment
Result = Literal["match", "mismatch", "noise", "skipped"]

_MISSING: Any = object()
_UNPARSED: Any = object()
NOT_JSON: Any = object()  # what `Reply.parsed` returns for a body that is not JSON
_TCHAR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: a valid header name


def _str(v: str | bytes) -> str:
    return v.decode("latin-1") if isinstance(v, bytes) else v  # header bytes map 1:1 onto latin-1


# ---------------------------------------------------------------------------------------------- responses


@dataclass(slots=True)
class Reply:
    """One response as compared. `body` is None when it was over the body limit (then only size and hash count)."""

    status: int
    headers: list[tuple[str, str]]  # names case-insensitive
    body: bytes | None
    body_size: int
    body_sha256: str  # hex; "" when unknown (only a prefix of an over-limit body was seen)
    _json: Any = field(default=_UNPARSED, init=False, repr=False, compare=False)

    @classmethod
    def of(
        cls,
        status: int,
        headers: Iterable[tuple[str | bytes, str | bytes]],
        body: bytes,
        limit: int = BODY_LIMIT,
        *,
        size: int | None = None,
        sha256: str | None = None,
    ) -> Reply:
        """From raw parts. `size`: the full body size when `body` is only its beginning (a sender that keeps a
        prefix); `sha256`: the full body's hash when the caller computed it while streaming."""
        total = len(body) if size is None else size
        whole = total == len(body)
        digest = sha256 if sha256 is not None else hashlib.sha256(body).hexdigest() if whole else ""
        kept = body if whole and total <= limit else None
        return cls(status, [(_str(k), _str(v)) for k, v in headers], kept, total, digest)

    def header(self, name: str) -> str | None:
        """All values of a header (case-insensitive), stripped and joined by ", "; None when absent."""
        name = name.lower()
        values = [v.strip() for k, v in self.headers if k.lower() == name]
        return ", ".join(values) if values else None

    def media(self) -> tuple[str, str | None]:
        """(type/subtype in lower case, charset or None) of the content-type."""
        mime, *params = (self.header("content-type") or "").split(";")
        charset = None
        for p in params:
            k, _, v = p.partition("=")
            if k.strip().lower() == "charset":
                charset = v.strip().strip('"') or None
        return mime.strip().lower(), charset

    def parsed(self) -> Any:
        """The body as JSON when its content-type is JSON and it parses; NOT_JSON otherwise. Parsed once."""
        if self._json is _UNPARSED:
            self._json = NOT_JSON
            if self.body is not None and _is_json(self.media()[0]):
                try:
                    self._json = json.loads(self.body, parse_constant=_reject_constant)
                except (ValueError, RecursionError):  # invalid, or nested deeper than Python's recursion limit
                    pass
        return self._json


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN would never equal itself


def _is_json(mime: str) -> bool:
    return mime == "application/json" or mime.endswith("+json")


def _is_text(r: Reply) -> bool:
    mime, charset = r.media()
    return (
        charset is not None
        or mime.startswith("text/")
        or _is_json(mime)
        or mime in ("application/xml", "application/javascript")
        or mime.endswith("+xml")
    )


# ---------------------------------------------------------------------------------------------- fields


def _escape(seg: str) -> str:
    return seg.replace("~", "~0").replace("/", "~1")  # RFC 6901 section 3: ~ first, so "~1" stays literal


def pointer(path: Iterable[str | None]) -> str:
    """A path as a JSON pointer (`*` for a wildcard segment); the empty path is `(root)`."""
    text = "".join("/" + ("*" if s is None else _escape(s)) for s in path)
    return text or ROOT


def _parse_pointer(text: str, wildcard: bool) -> Pattern:
    if text in ("", ROOT):
        return ()
    if not text.startswith("/"):
        raise ValueError(f"{text!r} is not a JSON pointer (it must start with '/')")
    if re.search(r"~(?![01])", text):
        raise ValueError(f"{text!r}: '~' must be followed by 0 or 1 (RFC 6901 escapes ~0 and ~1)")
    segs = text[1:].split("/")
    return tuple(None if wildcard and s == "*" else s.replace("~1", "/").replace("~0", "~") for s in segs)


def _is_index(seg: str) -> bool:
    return seg.isascii() and seg.isdigit()


def _general(path: Path) -> Pattern:
    return tuple(None if _is_index(s) else s for s in path)


@dataclass(frozen=True, slots=True)
class IgnoreRules:
    """Header names and JSON pointer patterns never compared. A pattern also covers everything beneath it."""

    headers: frozenset[str] = frozenset()
    pointers: tuple[Pattern, ...] = ()

    def covers(self, path: Path) -> bool:
        n = len(path)
        return any(
            len(p) <= n and all(s is None or s == x for s, x in zip(p, path, strict=False)) for p in self.pointers
        )


def parse_ignore(entries: Iterable[str]) -> IgnoreRules:
    """Entries starting with "/" are JSON pointers (`*`: any one segment), others header names.
    Raises ValueError with a one-line message for a bad entry."""
    headers: set[str] = set()
    pointers: list[Pattern] = []
    for raw in entries:
        e = raw.strip()
        if not e:
            raise ValueError("empty ignore entry (expected a JSON pointer such as /meta/timestamp or a header name)")
        if e.startswith("/"):
            pointers.append(_parse_pointer(e, wildcard=True))
        elif _TCHAR.fullmatch(e):
            headers.add(e.lower())
        else:
            raise ValueError(f"ignore entry {e!r} is neither a JSON pointer (starting with '/') nor a header name")
    return IgnoreRules(frozenset(headers), tuple(dict.fromkeys(pointers)))


@dataclass(frozen=True, slots=True)
class CompareConfig:
    """What to compare. Validated on construction: a bad entry raises ValueError with a one-line message."""

    headers: tuple[str, ...] = ("content-type",)
    ignore: tuple[str, ...] = ()
    body_limit: int = BODY_LIMIT
    rules: IgnoreRules = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = []
        for h in self.headers:
            if not _TCHAR.fullmatch(h.strip()):
                raise ValueError(f"compared header {h!r} is not a header name")
            names.append(h.strip().lower())
        if self.body_limit < 0:
            raise ValueError(f"body limit must be 0 or more bytes, got {self.body_limit}")
        object.__setattr__(self, "headers", tuple(dict.fromkeys(names)))
        object.__setattr__(self, "ignore", tuple(self.ignore))
        object.__setattr__(self, "rules", parse_ignore(self.ignore))


# ---------------------------------------------------------------------------------------------- noise


class NoiseSet:
    """Fields known to vary between two production answers to the same request, for one mapping. Bounded: once
    full, new fields are not learned (a noisy field then shows as a mismatch: loud rather than hidden)."""

    __slots__ = ("capacity", "status", "body", "headers", "paths")

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self.status = False
        self.body = False  # the body compared as text or by hash
        self.headers: set[str] = set()
        self.paths: set[Pattern] = set()  # exact paths and generalised ones (None for an array index)

    def __len__(self) -> int:
        return self.status + self.body + len(self.headers) + len(self.paths)

    def add(self, name: str) -> bool:
        """Learn a field by name: `status`, `body`, `header x`, or a pointer where `*` stands for any array index
        (or all-digit key). Returns whether it was added (False when already known or full)."""
        kind, value = _parse_field(name, wildcard=True)
        return self._add(kind, value)

    def _add(self, kind: str, value: Any) -> bool:
        if self.matches_exactly(kind, value) or len(self) >= self.capacity:
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

    def matches_exactly(self, kind: str, value: Any) -> bool:
        if kind == "status":
            return self.status
        if kind == "body":
            return self.body
        if kind == "header":
            return value in self.headers
        return value in self.paths

    def matches(self, name: str) -> bool:
        """Whether a differing field (named as in the diff text) is noise."""
        kind, value = _parse_field(name, wildcard=False)
        return self.covers(value) if kind == "path" else self.matches_exactly(kind, value)

    def covers(self, path: Path) -> bool:
        """A path is noise when it, or a field above it, was learned (exactly, or with any array index)."""
        paths = self.paths
        if not paths:
            return False
        if () in paths:
            return True
        general: Pattern = ()
        for i, seg in enumerate(path):
            general += (None if _is_index(seg) else seg,)
            if general in paths or path[: i + 1] in paths:
                return True
        return False

    def fields(self) -> list[str]:
        """Every learned field by name, sorted (for the dashboard)."""
        out = ["status"] * self.status + ["body"] * self.body + [f"header {h}" for h in sorted(self.headers)]
        return out + sorted(pointer(p) for p in self.paths)


def _parse_field(name: str, wildcard: bool) -> tuple[str, Any]:
    if name in ("status", "body"):
        return name, None
    if name.startswith("header "):
        return "header", name[7:].strip().lower()
    return "path", _parse_pointer(name, wildcard)


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
    - Bodies that are not JSON, or over the body limit, teach `body` when their hash changes.
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
        self._prints: OrderedDict[tuple[str, str], _Print] = OrderedDict()
        self._nodes = 0
        self._noise: dict[str, NoiseSet] = {}

    def __len__(self) -> int:
        return len(self._prints)

    def noise(self, mapping: str) -> NoiseSet:
        s = self._noise.get(mapping)
        if s is None:
            s = self._noise[mapping] = NoiseSet(self.max_noise)
        return s

    def observe(self, mapping: str, key: str, reply: Reply) -> None:
        if reply.status >= 500:
            return
        new = self._fingerprint(reply)
        old = self._prints.pop((mapping, key), None)
        if old is not None:
            self._nodes -= old.nodes
            self._learn(self.noise(mapping), old, new)
        self._prints[(mapping, key)] = new
        self._nodes += new.nodes
        while len(self._prints) > self.max_keys or self._nodes > self.node_budget:
            _, gone = self._prints.popitem(last=False)
            self._nodes -= gone.nodes

    def _fingerprint(self, r: Reply) -> _Print:
        headers = tuple(hash(r.header(h)) for h in self.headers)
        doc = r.parsed()
        body: dict[Path, int | str] | str | None
        if doc is not NOT_JSON:
            body = _flatten(doc, self.max_nodes)
        else:
            body = f"{r.body_size}:{r.body_sha256}" if r.body_sha256 else None
        return _Print(r.status, headers, body, len(body) if isinstance(body, dict) else 0)

    def _learn(self, noise: NoiseSet, old: _Print, new: _Print) -> None:
        if old.status != new.status:
            noise._add("status", None)
            return
        for name, a, b in zip(self.headers, old.headers, new.headers, strict=True):
            if a != b:
                noise._add("header", name)
        ob, nb = old.body, new.body
        if ob is None or nb is None:
            return
        if isinstance(ob, dict) and isinstance(nb, dict):
            for path, v in nb.items():
                was = ob.get(path, _MISSING)
                if was is _MISSING:
                    if path[:-1] in ob:  # where the difference starts; its children are covered by it
                        noise._add("path", path)
                elif was != v:
                    noise._add("path", _general(path))
            for path in ob:
                if path not in nb and path[:-1] in nb:
                    noise._add("path", path)
        elif ob != nb:
            noise._add("body", None)


# ---------------------------------------------------------------------------------------------- comparison


@dataclass(frozen=True, slots=True)
class Comparison:
    """match: nothing differs; noise: only known-noisy fields differ; mismatch: something else differs (`kinds`
    says where); skipped: nothing to compare (the shadow failed). `diffs`: one line per non-noise difference
    (at most MAX_LISTED, then "... and N more"); `noisy`: the names of the noisy fields that differed."""

    result: Result
    kinds: frozenset[str] = frozenset()
    diffs: list[str] = field(default_factory=list)
    noisy: list[str] = field(default_factory=list)


def skipped(reason: str) -> Comparison:
    return Comparison("skipped", diffs=[f"skipped: {reason}"])


def _render(v: Any) -> str:
    if v is _MISSING:
        return "missing"
    # The subtrees of distinct differences are disjoint, so dumping them costs at most one pass over the body.
    text = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "..."


def _clip(s: str | None) -> str:
    if s is None:
        return "missing"
    return s if len(s) <= MAX_VALUE else s[: MAX_VALUE - 3] + "..."


class _Collector:
    """Sorts each difference into ignored, noisy or listed, rendering only what is listed."""

    __slots__ = ("rules", "noise", "kinds", "diffs", "noisy", "more", "more_noisy")

    def __init__(self, rules: IgnoreRules, noise: NoiseSet | None) -> None:
        self.rules, self.noise = rules, noise
        self.kinds: set[str] = set()
        self.diffs: list[str] = []
        self.noisy: list[str] = []
        self.more = self.more_noisy = 0

    def _put(self, kind: str, name: str | Path, is_noise: bool, a: Any, b: Any, render: bool) -> None:
        """`name`: a label, or a path whose pointer is built only if it is listed."""
        if is_noise:
            if len(self.noisy) < MAX_LISTED:
                self.noisy.append(pointer(name) if isinstance(name, tuple) else name)
            else:
                self.more_noisy += 1
            return
        self.kinds.add(kind)
        if len(self.diffs) >= MAX_LISTED:
            self.more += 1
            return
        label = pointer(name) if isinstance(name, tuple) else name
        self.diffs.append(f"{label}: {_render(a)} -> {_render(b)}" if render else f"{label}: {a} -> {b}")

    def status(self, a: int, b: int) -> None:
        # A shadow failing where production did not is never written off as noise.
        noise = self.noise is not None and self.noise.status and not (b >= 500 > a)
        self._put("status", "status", noise, a, b, False)

    def header(self, name: str, a: str | None, b: str | None) -> None:
        noise = self.noise is not None and name in self.noise.headers
        self._put("header", f"header {name}", noise, _clip(a), _clip(b), False)

    def body(self, a: str, b: str) -> None:
        self._put("body", "body", self.noise is not None and self.noise.body, a, b, False)

    def path(self, node: Any, a: Any, b: Any) -> None:
        """A JSON difference at a linked path node (see `_walk`)."""
        if len(self.diffs) >= MAX_LISTED and not self.rules.pointers and not (self.noise and self.noise.paths):
            self.kinds.add("body")  # nothing left to decide per field: skip building its path
            self.more += 1
            return
        segs: list[str] = []
        while node is not None:
            node, seg = node
            segs.append(seg)
        path = tuple(reversed(segs))
        if self.rules.pointers and self.rules.covers(path):
            return
        noise = self.noise is not None and self.noise.covers(path)
        self._put("body", path, noise, a, b, True)

    def result(self) -> Comparison:
        if self.more:
            self.diffs.append(f"... and {self.more} more")
        if self.more_noisy:
            self.noisy.append(f"... and {self.more_noisy} more")
        result: Result = "mismatch" if self.kinds else "noise" if self.noisy else "match"
        return Comparison(result, frozenset(self.kinds), self.diffs, self.noisy)


def _same(a: Any, b: Any) -> bool:
    # JSON semantics: 1 == 1.0, but true is not 1 (Python's bool is an int).
    return a == b and (type(a) is bool) == (type(b) is bool)


def _walk(a: Any, b: Any, out: _Collector) -> None:
    """Structural diff of two JSON documents, in document order, without recursion. Equal leaves of the same
    type are skipped where they are met; paths are linked (parent, segment) nodes, made tuples only when a
    difference needs one."""
    stack: list[tuple[Any, Any, Any]] = [(None, a, b)]
    push = stack.append
    while stack:
        node, x, y = stack.pop()
        tx, ty = type(x), type(y)
        if tx is dict and ty is dict:
            for k in reversed([k for k in y if k not in x]):  # pushed first: listed after x's keys
                push(((node, k), _MISSING, y[k]))
            for k, v in reversed(x.items()):
                w = y.get(k, _MISSING)
                tv = type(v)
                if tv is not type(w) or tv is dict or tv is list or v != w:
                    push(((node, k), v, w))
        elif tx is list and ty is list:
            n, m = len(x), len(y)
            for i in range(max(n, m) - 1, -1, -1):
                v = x[i] if i < n else _MISSING
                w = y[i] if i < m else _MISSING
                tv = type(v)
                if tv is not type(w) or tv is dict or tv is list or v != w:
                    push(((node, str(i)), v, w))
        elif x is _MISSING or y is _MISSING or not _same(x, y):
            out.path(node, x, y)


def _no_bools(body: bytes) -> bool:
    return b"true" not in body and b"false" not in body


def _text(r: Reply) -> str:
    assert r.body is not None
    charset = r.media()[1] or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    return r.body.decode(charset, errors="replace").replace("\r\n", "\n").replace("\r", "\n")


def _text_diff(p: Reply, s: Reply) -> tuple[str, str] | None:
    """The first differing line of two texts, after normalising line endings; None when they are equal."""
    a, b = _text(p), _text(s)
    if a == b:
        return None
    la, lb = a.split("\n"), b.split("\n")
    i = next((i for i, (x, y) in enumerate(zip(la, lb, strict=False)) if x != y), min(len(la), len(lb)))
    x = _render(la[i]) if i < len(la) else "missing"
    y = _render(lb[i]) if i < len(lb) else "missing"
    return f"line {i + 1}: {x}", y


def _digest(r: Reply) -> str:
    return f"{r.body_size} bytes sha256 {r.body_sha256[:12] or '?'}.."


def _compare_body(p: Reply, s: Reply, out: _Collector) -> None:
    if p.body is not None and s.body is not None:
        if p.body == s.body:
            return
        pj, sj = p.parsed(), s.parsed()
        if pj is not NOT_JSON and sj is not NOT_JSON:
            # Without booleans Python's == is JSON equality (only true == 1 sets them apart): a C-speed match.
            if not (pj == sj and _no_bools(p.body) and _no_bools(s.body)):
                _walk(pj, sj, out)
        elif _is_text(p) and _is_text(s):
            d = _text_diff(p, s)
            if d is not None:
                out.body(*d)
        else:
            out.body(_digest(p), _digest(s))
        return
    # Over the limit on at least one side: size and hash decide (sizes alone when a hash is unknown).
    hashes_agree = p.body_sha256 == s.body_sha256 or not p.body_sha256 or not s.body_sha256
    if p.body_size != s.body_size or not hashes_agree:
        out.body(_digest(p), _digest(s))


def compare(production: Reply, shadow: Reply, config: CompareConfig, noise: NoiseSet | None = None) -> Comparison:
    """Compare the shadow's answer with production's: status, the configured headers, the body."""
    out = _Collector(config.rules, noise)
    if production.status != shadow.status:
        out.status(production.status, shadow.status)
    for name in config.headers:
        if name in config.rules.headers:
            continue
        a, b = production.header(name), shadow.header(name)
        if a != b:
            out.header(name, a, b)
    _compare_body(production, shadow, out)
    return out.result()


# ---------------------------------------------------------------------------------------------- grouping


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]{8,}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{10,}")
_SWITCH = re.compile(r"[A-Za-z](?=[0-9])|[0-9](?=[A-Za-z])")
_PREFIXED = re.compile(r"[A-Za-z]+[_-][0-9]{3,}")


def _id_like(seg: str) -> bool:
    """Conservative: digits; a UUID; 8+ hex characters with a digit; a prefixed number (`usr_123`, 3+ digits);
    a 10+ character token switching between letters and digits 3+ times (random ids do, words and versions such
    as `v1`, `oauth2`, `v1beta1`, `sha256` do not)."""
    if _is_index(seg) or _UUID.fullmatch(seg) or _PREFIXED.fullmatch(seg):
        return True
    if _HEX.fullmatch(seg) and any(c.isdigit() for c in seg):
        return True
    return bool(_TOKEN.fullmatch(seg)) and len(_SWITCH.findall(seg)) >= 3


def endpoint(method: str, path: str) -> str:
    """`GET /users/{id}/orders/{id}`: method and path without query, id-like segments collapsed."""
    path = path.split("?", 1)[0].split("#", 1)[0] or "/"
    return f"{method.upper()} " + "/".join("{id}" if _id_like(s) else s for s in path.split("/"))


# ---------------------------------------------------------------------------------------------- store


OTHER = "(other)"


@dataclass(slots=True)
class _Group:
    compared: int = 0
    mismatches: int = 0
    noise: int = 0
    skipped: int = 0


def _side(r: Reply | None, limit: int) -> dict[str, Any] | None:
    if r is None:
        return None
    text: str | None = None
    binary = False
    if r.body is not None:
        head = r.body[:limit]
        charset = r.media()[1] or "utf-8"
        try:
            # Incremental: a multi-byte character cut by the preview limit is dropped, not an error.
            text = codecs.getincrementaldecoder(charset)().decode(head, final=len(head) == len(r.body))
        except (LookupError, UnicodeDecodeError):
            binary = True
    return {
        "status": r.status,
        "headers": [[k, v] for k, v in r.headers],
        "body_size": r.body_size,
        "body_sha256": r.body_sha256,
        "body_preview": text,
        "body_truncated": r.body is None or r.body_size > limit,
        "body_binary": binary,
    }


def _at(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


class MismatchStore:
    """The most recent mismatches, with both answers, and per (mapping, endpoint) counts that outlive them.
    Bounded: `capacity` records, `max_groups` endpoints (then each mapping's `(other)` bucket)."""

    def __init__(self, capacity: int = 200, max_groups: int = 1000, preview: int = PREVIEW) -> None:
        self.records: deque[dict[str, Any]] = deque(maxlen=capacity)
        self.groups: dict[tuple[str, str], _Group] = {}
        self.max_groups = max_groups
        self.preview = preview
        self.seq = 0

    def add(
        self,
        mapping: str,
        endpoint: str,
        request_summary: Mapping[str, Any],
        production: Reply | None,
        shadow: Reply | None,
        comparison: Comparison,
        now: float | None = None,
    ) -> dict[str, Any] | None:
        """Count one comparison; keep it when it is a mismatch. Returns the stored record, else None."""
        key = (mapping, endpoint)
        g = self.groups.get(key)
        if g is None:
            if len(self.groups) >= self.max_groups:
                key = (mapping, OTHER)
            g = self.groups.setdefault(key, _Group())
        if comparison.result == "skipped":
            g.skipped += 1
            return None
        g.compared += 1
        if comparison.result == "noise":
            g.noise += 1
        if comparison.result != "mismatch":
            return None
        g.mismatches += 1
        self.seq += 1
        t = time.time() if now is None else now
        record = {
            "id": self.seq,
            "time": t,
            "at": _at(t),
            "mapping": mapping,
            "endpoint": endpoint,
            "request": dict(request_summary),
            "result": comparison.result,
            "kinds": sorted(comparison.kinds),
            "diffs": list(comparison.diffs),
            "noisy": list(comparison.noisy),
            "production": _side(production, self.preview),
            "shadow": _side(shadow, self.preview),
        }
        self.records.append(record)
        return record

    def to_json(self) -> dict[str, Any]:
        """For GET /diffs: records newest first; groups by mismatch count, then name."""
        groups = [
            {
                "mapping": m,
                "endpoint": e,
                "compared": g.compared,
                "mismatches": g.mismatches,
                "noise": g.noise,
                "skipped": g.skipped,
                "rate": g.mismatches / g.compared if g.compared else 0.0,
            }
            for (m, e), g in self.groups.items()
        ]
        groups.sort(key=lambda r: (-r["mismatches"], r["mapping"], r["endpoint"]))
        return {"capacity": self.records.maxlen, "records": list(reversed(self.records)), "groups": groups}


def record_line(record: Mapping[str, Any]) -> str:
    """One line of a JSON-lines report (newline included): a stored record without the body previews."""
    slim = {k: record[k] for k in ("at", "time", "mapping", "endpoint", "request", "result", "kinds", "diffs", "noisy")}
    for side in ("production", "shadow"):
        r = record.get(side)
        slim[side] = None if r is None else {k: r[k] for k in ("status", "body_size", "body_sha256")}
    return json.dumps(slim, ensure_ascii=False, separators=(",", ":")) + "\n"
