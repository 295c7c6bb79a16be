"""Small text helpers for what people read: counts with their noun, and values cut to a width with an ellipsis."""

from __future__ import annotations

import reprlib
from typing import Any

ELLIPSIS = "..."  # ASCII: the report is printed to any terminal


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """`1 group`, `2 groups`; `nouns` when the plural is not noun + "s"."""
    return f"{n} {noun if n == 1 else (nouns or noun + 's')}"


def clip(text: str, width: int) -> str:
    """`text` in at most `width` characters; a cut one ends in an ellipsis, so it is not read as the whole value."""
    if len(text) <= width:
        return text
    return text[: max(0, width - len(ELLIPSIS))] + ELLIPSIS


MAX_INT_BITS = 256  # integers beyond this are not shown digit by digit (and YAML refuses them): printing is slow


def type_name(v: Any) -> str:
    """A value's type as a YAML user names it (null for None)."""
    return "null" if v is None else type(v).__name__


class _Show(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > MAX_INT_BITS:
            return f"<{x.bit_length()}-bit integer>"
        return super().repr_int(x, level)


# Bounded repr for messages: a shared (aliased) structure is never walked past a few elements, strings and
# numbers are cut in the middle, and non-printable characters come out escaped, so the message stays one line.
_SHOW = _Show(
    maxlevel=2,
    maxtuple=4,
    maxlist=4,
    maxarray=4,
    maxdict=4,
    maxset=4,
    maxfrozenset=4,
    maxdeque=4,
    maxstring=80,
    maxlong=80,
    maxother=80,
)


def show(v: Any) -> str:
    if v is None or isinstance(v, bool):  # as the user wrote them in YAML
        return "null" if v is None else str(v).lower()
    return _SHOW.repr(v)


def clean(s: str) -> str:
    """Text from a file or a path, safe inside a one-line message: non-printable characters escaped."""
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)
