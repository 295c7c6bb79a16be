"""Request matching as Envoy runs it: the path normalised, then one group's path, header and query tests,
compiled once per configuration (`build_matcher`) and run per request (`Matcher.matches`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .. import regex
from ..mappings import Mapping
from .groups import KeyValue, header_matches, query_matches


class HeaderLookup(Protocol):
    def get(self, key: str, /) -> str | None: ...


@dataclass(frozen=True, slots=True)
class RequestView:
    """What routing needs to know of a request (a mitmproxy Request satisfies it through `view_of`)."""

    method: str
    path: str  # with query string, as on the wire
    authority: str  # the client's Host (or :authority)
    headers: HeaderLookup


def _path_only(path: str) -> str:
    i = path.find("?")
    return path if i < 0 else path[:i]


def _is_dot(seg: str, dots: int) -> bool:
    """A `.` or `..` segment, percent-encoded dots included (Envoy canonicalPath, via Chromium's URL library)."""
    return seg.lower().replace("%2e", ".") == "." * dots


def normalize_path(path: str) -> str:
    """The path as Envoy routes it: Emissary turns on `normalize_path` (v3listener.py), RFC 3986 5.2.4 dot-segment
    removal (`/a/../b/` is `/b/`). The query is kept as is; `merge_slashes` stays off, escaped slashes stay."""
    p, sep, q = path.partition("?")
    if "." not in p and "%2" not in p:  # the common case: nothing to remove
        return path
    out: list[str] = []
    segs = p.split("/")
    for i, seg in enumerate(segs[1:] if p.startswith("/") else segs):
        last = i == len(segs) - (2 if p.startswith("/") else 1)
        if _is_dot(seg, 1):
            if last:
                out.append("")
        elif _is_dot(seg, 2):
            if out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out) + sep + q


def first_query_values(path: str) -> dict[str, str]:
    """Envoy QueryParamsMulti::parseQueryString + getFirstValue: the raw, undecoded first value of each name."""
    i = path.find("?")
    out: dict[str, str] = {}
    if i < 0:
        return out
    for part in path[i + 1 :].split("#", 1)[0].split("&"):
        if part:
            name, _, value = part.partition("=")
            out.setdefault(name, value)
    return out


Test = Callable[[str | None], bool]


def _value_test(h: KeyValue) -> Test | None:
    """Envoy HeaderUtility: exact and regex (full match, RE2) on the whole value, case-sensitive; present-only;
    `:authority` globs are prefix/suffix matches and `*` matches anything (v3route.py generate_headers)."""
    expected = h.value
    if expected is None:
        return lambda v: v is not None
    if h.regex:
        rx = regex.compile(expected)
        return lambda v: v is not None and rx.fullmatch(v) is not None
    if h.name == ":authority":
        if expected == "*":
            return None
        if expected.startswith("*"):
            suffix = expected[1:]
            return lambda v: v is not None and v.endswith(suffix)
        if expected.endswith("*"):
            prefix = expected[:-1]
            return lambda v: v is not None and v.startswith(prefix)
    return lambda v: v == expected


@dataclass(frozen=True, slots=True)
class Matcher:
    """One group's compiled match: built once per configuration, run per request (on the normalised path)."""

    path_test: Callable[[str], bool]
    header_tests: tuple[tuple[str, Test], ...]
    query_tests: tuple[tuple[str, Test], ...]

    def matches(self, req: RequestView, path: str) -> bool:
        if not self.path_test(path):
            return False
        for name, test in self.header_tests:
            if name == ":authority":
                value: str | None = req.authority
            elif name == ":method":
                value = req.method
            else:
                value = req.headers.get(name)
            if not test(value):
                return False
        if self.query_tests:
            query = first_query_values(path)
            for name, test in self.query_tests:
                if not test(query.get(name)):
                    return False
        return True


def path_test(m: Mapping, case_sensitive: bool | None = None) -> Callable[[str], bool]:
    """Envoy route match: `prefix` on the whole :path; `path` (prefix_exact) and `safe_regex` (prefix_regex,
    a full match) on the path without its query string. case_sensitive (the route's, else the Mapping's): false
    folds case, except for a regex, which RE2 runs as written."""
    if case_sensitive is None:
        case_sensitive = m.case_sensitive
    if m.prefix_regex:
        rx = regex.compile(m.prefix)
        return lambda p: rx.fullmatch(_path_only(p)) is not None
    if m.prefix_exact:
        if case_sensitive:
            return lambda p: _path_only(p) == m.prefix
        low = m.prefix.lower()
        return lambda p: _path_only(p).lower() == low
    if case_sensitive:
        prefix = m.prefix
        return lambda p: p.startswith(prefix)
    low = m.prefix.lower()
    n = len(low)
    return lambda p: p[:n].lower() == low


def build_matcher(m: Mapping, case_sensitive: bool | None = None) -> Matcher:
    headers = [(h.name.lower() if h.name.startswith(":") else h.name, _value_test(h)) for h in header_matches(m)]
    queries = [(q.name, _value_test(q)) for q in query_matches(m)]
    return Matcher(
        path_test(m, case_sensitive),
        tuple((n, t) for n, t in headers if t is not None),
        tuple((n, t) for n, t in queries if t is not None),
    )
