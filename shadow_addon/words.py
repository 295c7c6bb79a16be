"""Small text helpers for what people read: counts with their noun, and values cut to a width with an ellipsis."""

from __future__ import annotations

ELLIPSIS = "..."  # ASCII: the report is printed to any terminal


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """`1 group`, `2 groups`; `nouns` when the plural is not noun + "s"."""
    return f"{n} {noun if n == 1 else (nouns or noun + 's')}"


def clip(text: str, width: int) -> str:
    """`text` in at most `width` characters; a cut one ends in an ellipsis, so it is not read as the whole value."""
    if len(text) <= width:
        return text
    return text[: max(0, width - len(ELLIPSIS))] + ELLIPSIS
