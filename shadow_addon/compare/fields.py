"""Names of compared fields and the rules that leave some out.

Fields are named as in the diff text: `status`, `header <name>`, `body` (a body compared as text or by hash),
and RFC 6901 JSON pointers for the fields of JSON bodies (`(root)` for the whole document).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..httpsyntax import is_field_name

ROOT = "(root)"

Path = tuple[str, ...]
Pattern = tuple[str | None, ...]  # None: any one segment

is_header_name = is_field_name  # RFC 9110 token: a valid header name


def _escape(seg: str) -> str:
    return seg.replace("~", "~0").replace("/", "~1")  # RFC 6901 section 3: ~ first, so "~1" stays literal


def pointer(path: Iterable[str | None], limit: int | None = None) -> str:
    """A path as a JSON pointer (`*` for a wildcard segment); the empty path is `(root)`. With `limit`, only the
    pointer's first limit + 1 characters are built (what `render.clip` to `limit` keeps of it, and whether it is
    longer): a long segment is escaped only as far as it shows, never copied whole."""
    if limit is None:
        return "".join("/" + ("*" if s is None else _escape(s)) for s in path) or ROOT
    parts: list[str] = []
    size = 0
    for s in path:
        if size > limit:
            break
        # Escaping is character by character: a prefix's escape is a prefix of the whole segment's.
        piece = "/" + ("*" if s is None else _escape(s[: limit + 1 - size]))
        parts.append(piece)
        size += len(piece)
    return "".join(parts) or ROOT


def parse_pointer(text: str, wildcard: bool) -> Pattern:
    """A JSON pointer as a path; with `wildcard`, a `*` segment stands for any one segment."""
    if text in ("", ROOT):
        return ()
    if not text.startswith("/"):
        raise ValueError(f"{text!r} is not a JSON pointer (it must start with '/')")
    if re.search(r"~(?![01])", text):
        raise ValueError(f"{text!r}: '~' must be followed by 0 or 1 (RFC 6901 escapes ~0 and ~1)")
    segs = text[1:].split("/")
    return tuple(None if wildcard and s == "*" else s.replace("~1", "/").replace("~0", "~") for s in segs)


def is_index(seg: str) -> bool:
    return seg.isascii() and seg.isdigit()


def general(path: Path) -> Pattern:
    """The path with every array index (or all-digit key) made a wildcard."""
    return tuple(None if is_index(s) else s for s in path)


_END = object()  # trie key: a pattern ends here (and covers everything beneath)
State = tuple[dict[Any, Any], ...]  # the trie nodes a path has reached
NOTHING: State = ()  # no pattern can match below: stepping on costs nothing


class Trie:
    """Patterns as a trie, so that a walk down a document tests a node against every pattern in O(1) (the few
    trie nodes reached so far), not O(depth) per pattern per node. `wildcard_indices`: a None segment stands for
    an array index only (learned noise); otherwise for any one segment (ignore rules)."""

    __slots__ = ("root", "wildcard_indices", "size")

    def __init__(self, wildcard_indices: bool = False) -> None:
        self.root: dict[Any, Any] = {}
        self.wildcard_indices = wildcard_indices
        self.size = 0

    def add(self, pattern: Pattern) -> None:
        node = self.root
        for seg in pattern:
            node = node.setdefault(seg, {})
        if _END not in node:
            node[_END] = True
            self.size += 1

    def start(self) -> State:
        return (self.root,) if self.size else NOTHING

    def step(self, state: State, seg: str) -> tuple[State, bool]:
        """The state below segment `seg`, and whether a pattern covers that node."""
        if not state:
            return NOTHING, False
        out: list[dict[Any, Any]] = []
        wild = not self.wildcard_indices or is_index(seg)
        for node in state:
            for child in (node.get(seg), node.get(None) if wild else None):
                if child is not None:
                    if _END in child:
                        return NOTHING, True
                    out.append(child)
        return tuple(out), False

    def covers(self, path: Iterable[str]) -> bool:
        state = self.start()
        if state and _END in self.root:
            return True
        for seg in path:
            state, covered = self.step(state, seg)
            if covered:
                return True
            if not state:
                return False
        return False


@dataclass(frozen=True, slots=True)
class IgnoreRules:
    """Header names and JSON pointer patterns never compared. A pattern also covers everything beneath it."""

    headers: frozenset[str] = frozenset()
    pointers: tuple[Pattern, ...] = ()
    trie: Trie = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        trie = Trie()
        for p in self.pointers:
            trie.add(p)
        object.__setattr__(self, "trie", trie)

    def covers(self, path: Path) -> bool:
        return self.trie.covers(path)


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
            pointers.append(parse_pointer(e, wildcard=True))
        elif is_header_name(e):
            headers.add(e.lower())
        else:
            raise ValueError(f"ignore entry {e!r} is neither a JSON pointer (starting with '/') nor a header name")
    return IgnoreRules(frozenset(headers), tuple(dict.fromkeys(pointers)))
