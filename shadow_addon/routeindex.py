"""Which groups a request may match, found without trying every group: an index over the groups' paths.

The ordered scan (`routing.resolve`) tries every group in route order, so its cost grows with the number of
Mappings. The index keeps that order and that match function: it only leaves out groups whose path test cannot
pass, using a condition every path test implies (below), and hands the rest, in route order, to the same loop.
Headers, host, method, query, canary weights and the path test itself still run as in the scan, so a change to
those rules needs no change here.

The condition: a group's path test can pass only if the request path, case-folded character by character, starts
with the group's literal path prefix, case-folded. For `prefix` and `prefix_exact` that literal is the prefix; for
`prefix_regex` it is the text RE2 finds every full match starts with. This holds whether the group folds case or
not. Groups whose literal is not plain ASCII, and regexes without such text, are tried for every request; so are
all regex groups for a path that is not plain ASCII (RE2's case folding is not Python's). Groups without a route
are left out: the scan skips them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from . import regex


class _PathSpec(Protocol):
    @property
    def prefix(self) -> str: ...

    @property
    def prefix_regex(self) -> bool: ...


class _Group(Protocol):
    @property
    def members(self) -> tuple[_PathSpec, ...]: ...

    @property
    def routes(self) -> bool: ...


MATCH_RANGE_LEN = 64  # bytes of RE2's possible match range asked for: a literal longer than this is cut


def regex_literal(pattern: str) -> str:
    """Text every full match of `pattern` starts with, as RE2 itself works it out: every anchored match lies between
    the two ends of RE2::PossibleMatchRange, so it starts with their common prefix (its ASCII part is kept)."""
    try:
        low, high = regex.compile(pattern).possiblematchrange(MATCH_RANGE_LEN)
    except Exception:  # noqa: BLE001 - no range known: the group is tried for every request
        return ""
    n = 0
    for a, b in zip(low, high, strict=False):
        if a != b or a >= 0x80:
            break
        n += 1
    return low[:n].decode("ascii")


def fold(path: str) -> str:
    """The path lower-cased character by character (a character whose lower case is longer stays as it is, so
    positions keep lining up with the prefix)."""
    if path.isascii():
        return path.lower()
    return "".join(low if len(low := c.lower()) == 1 else c for c in path)


class RouteIndex[G: _Group]:
    """Built once per table (off the event loop, with the table); `candidates` runs per request."""

    __slots__ = ("_groups", "_by_literal", "_lengths", "_always", "_regex_all", "_ids")

    def __init__(self, groups: Sequence[G]) -> None:
        self._groups = tuple(groups)
        by_literal: dict[str, list[int]] = {}
        always: list[int] = []
        regex_all: list[int] = []  # every regex group: a non-ASCII path tries them all
        for i, g in enumerate(self._groups):
            if not g.routes:
                continue
            first = g.members[0]
            if first.prefix_regex:
                regex_all.append(i)
                literal = regex_literal(first.prefix)
            else:
                literal = first.prefix
            if literal and literal.isascii():
                by_literal.setdefault(literal.lower(), []).append(i)
            else:
                always.append(i)
        self._by_literal = {k: tuple(v) for k, v in by_literal.items()}
        self._lengths = tuple(sorted({len(k) for k in by_literal}))
        self._always = tuple(always)
        self._regex_all = tuple(regex_all)

    def __len__(self) -> int:
        return len(self._groups)

    def candidates(self, path: str) -> Sequence[G]:
        """The groups whose path test may pass for `path` (normalised, query included), in route order."""
        folded = fold(path)
        found: list[tuple[int, ...]] = [self._always] if self._always else []
        n = len(folded)
        for length in self._lengths:
            if length > n:
                break
            ids = self._by_literal.get(folded[:length])
            if ids is not None:
                found.append(ids)
        if not path.isascii() and self._regex_all:
            found.append(self._regex_all)
        groups = self._groups
        if len(found) == 1:
            return [groups[i] for i in found[0]]
        return [groups[i] for i in sorted({i for ids in found for i in ids})]
