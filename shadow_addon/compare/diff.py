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

import codecs
from urllib.parse import unquote

from ..grpcwire import code_label, code_name
from . import jsondiff
from .config import CompareConfig
from .noiseset import NoiseSet
from .render import MAX_VALUE, render
from .reply import NOT_JSON, Reply
from .result import Comparison, skipped


def _first_line(a: str | bytes, b: str | bytes) -> tuple[str, str]:
    """The first differing line of two different texts (lines end at \\n; a \\r stays part of its line, so
    other line endings are a difference), as "line N: production's" and the shadow's, each clipped. `a` and `b`
    are both str, or both bytes of ASCII (the text itself, character for character). Found from the first
    differing character, at C speed: the work is bounded by where the texts differ plus the clip, not by their
    length (no text is split into lines or copied whole)."""
    nl = "\n" if isinstance(a, str) else b"\n"
    i = _common_prefix(a, b)
    line = a.count(nl, 0, i)  # type: ignore[arg-type]
    start = a.rfind(nl, 0, i) + 1  # type: ignore[arg-type]
    # Line `line` differs, unless one text ends at i and the other's line ends there too: then the longer one
    # has one more line, which the shorter lacks.
    if i == len(a) and b[i : i + 1] == nl:
        return f"line {line + 2}: missing", _line(b, i + 1)
    if i == len(b) and a[i : i + 1] == nl:
        return f"line {line + 2}: {_line(a, i + 1)}", "missing"
    return f"line {line + 1}: {_line(a, start)}", _line(b, start)


def _common_prefix(a: str | bytes, b: str | bytes) -> int:
    """The length of the longest common prefix: slices compared at C speed, growing until one differs, then
    halved; copies about four times the prefix, whatever comes after it."""
    n = min(len(a), len(b))
    lo, step = 0, 4096
    while True:
        if lo >= n:
            return n
        hi = min(n, lo + step)
        if a[lo:hi] != b[lo:hi]:
            break
        lo, step = hi, step * 2
    while hi - lo > 1:  # a[:lo] == b[:lo] and a[lo:hi] != b[lo:hi]
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _line(t: str | bytes, start: int) -> str:
    """The line of `t` that starts at `start`, rendered and clipped (only the clip's worth of it is looked at)."""
    nl = "\n" if isinstance(t, str) else b"\n"
    end = t.find(nl, start, start + MAX_VALUE + 1)  # type: ignore[arg-type]
    piece = t[start : start + MAX_VALUE + 1 if end < 0 else end]
    return render(piece if isinstance(piece, str) else piece.decode("ascii"))


_ASCII_SUPERSETS = frozenset({"utf-8", "ascii", "iso8859-1"})  # codec names in which ASCII bytes are those characters


def _text(r: Reply) -> str | bytes | None:
    """`Reply.text`, except that an ASCII body in a charset where ASCII bytes are those characters (UTF-8, the
    default) is its own bytes: the same text, without decoding a copy of up to the body limit."""
    body = r.body
    if body is not None and body.isascii() and r.is_text():
        charset = r.media()[1] or "utf-8"
        try:
            if codecs.lookup(charset).name in _ASCII_SUPERSETS:
                return body
        except LookupError:
            return None  # as Reply.text: an unknown charset is not text
    return r.text()


def _digest(size: int, sha256: str) -> str:
    return f"{size} bytes sha256 {sha256[:12] or '?'}.."


def _compare_body(p: Reply, s: Reply, out: jsondiff.Collector, parse_limit: int) -> None:
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
                    jsondiff.walk(pj, sj, out)
                return
            except RecursionError:  # == on a subtree nested deeper than Python's C stack allows: bytes decide
                out.body(_digest(*p.digest()), _digest(*s.digest()))
                return
        # Not JSON on both sides: bytes decide. Text (decoded strictly by a text charset) only names the line.
        ta, tb = _text(p), _text(s)
        if type(ta) is not type(tb) and ta is not None and tb is not None:
            ta, tb = p.text(), s.text()  # one is ASCII kept as bytes, the other not: both as str
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


def _compare_grpc(p: Reply, s: Reply, out: jsondiff.Collector) -> None:
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
    out = jsondiff.Collector(config.rules, noise)
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
    except jsondiff.TooLarge:
        return skipped(f"over {jsondiff.MAX_NODES} JSON nodes", "size")
    return out.result()
