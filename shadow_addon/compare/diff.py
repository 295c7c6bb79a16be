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

from urllib.parse import unquote

from ..grpcwire import code_label, code_name
from . import jsondiff
from .config import CompareConfig
from .noiseset import NoiseSet
from .render import MAX_VALUE, render
from .reply import NOT_JSON, Reply
from .result import Comparison, skipped


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
