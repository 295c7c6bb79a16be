"""Production vs shadow answers, field by field, with ignore rules and learned noise.

Pure: no I/O. It runs on mitmproxy's event loop for every compared request, so each body is parsed at most once
(cached on its `Reply`), every walk is linear in the body, and values are rendered only for the few differences
that are listed.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

from ..grpcwire import code_label, code_name
from .descriptors import Descriptors
from .descriptors import load as load_descriptors
from .fields import IgnoreRules, Path, is_header_name, parse_ignore, pointer
from .noise import NoiseSet
from .reply import BODY_LIMIT, NOT_JSON, Reply

MAX_LISTED = 20  # differences listed per comparison; the rest are counted
MAX_VALUE = 80  # characters of one rendered value

Result = Literal["match", "mismatch", "noise", "skipped"]

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class CompareConfig:
    """What to compare. Validated on construction: a bad entry raises ValueError with a one-line message."""

    headers: tuple[str, ...] = ("content-type",)
    ignore: tuple[str, ...] = ()
    body_limit: int = BODY_LIMIT
    descriptors: str = ""  # a FileDescriptorSet file: gRPC fields by name instead of number
    rules: IgnoreRules = field(init=False, repr=False, compare=False)
    names: Descriptors | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = []
        for h in self.headers:
            if not is_header_name(h.strip()):
                raise ValueError(f"compared header {h!r} is not a header name")
            names.append(h.strip().lower())
        if self.body_limit < 0:
            raise ValueError(f"body limit must be 0 or more bytes, got {self.body_limit}")
        object.__setattr__(self, "headers", tuple(dict.fromkeys(names)))
        object.__setattr__(self, "ignore", tuple(self.ignore))
        object.__setattr__(self, "rules", parse_ignore(self.ignore))
        object.__setattr__(self, "names", load_descriptors(self.descriptors) if self.descriptors else None)


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


def _digest(size: int, sha256: str) -> str:
    return f"{size} bytes sha256 {sha256[:12] or '?'}.."


def _compare_body(p: Reply, s: Reply, out: _Collector) -> None:
    if p.body is not None and s.body is not None:
        if p.body == s.body:
            return
        pj, sj = p.parsed(), s.parsed()
        if pj is not NOT_JSON and sj is not NOT_JSON:
            # Without booleans Python's == is JSON equality (only true == 1 sets them apart): a C-speed match.
            if not (pj == sj and _no_bools(p.body) and _no_bools(s.body)):
                _walk(pj, sj, out)
        elif p.is_text() and s.is_text():
            d = _text_diff(p, s)
            if d is not None:
                out.body(*d)
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
        out._put("status", "grpc-status", False, _grpc_code(pg), _grpc_code(sg), False)
    # Percent-decoded as the protocol sends it; empty is no message (grpcio sends an empty one with OK).
    pm, sm = unquote(p.header("grpc-message") or "") or None, unquote(s.header("grpc-message") or "") or None
    if pm != sm and "grpc-message" not in out.rules.headers:
        out.header("grpc-message", pm, sm)


def _grpc_code(v: str | None) -> str:
    return "missing" if v is None else f"{v} ({code_name(code_label(v))})"


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
    _compare_body(production, shadow, out)
    return out.result()
