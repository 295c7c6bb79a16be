"""Values as the diff text shows them: compact JSON clipped with an ellipsis, written piece by piece so that the
cost is bounded by the clip, not by the value's size."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

MAX_VALUE = 80  # characters of one rendered value
MAX_LABEL = 200  # characters of one field's label (a JSON pointer)
ELLIPSIS = "..."

MISSING: Any = object()  # a field on one side only (rendered `missing`)


def clip(text: str, limit: int = MAX_VALUE) -> str:
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


def _json_string(s: str, limit: int) -> str:
    return json.dumps(s[:limit], ensure_ascii=False)


def render(v: Any, limit: int = MAX_VALUE) -> str:
    """A JSON value as compact JSON text, clipped to `limit` characters with an ellipsis. Written piece by piece
    and stopped once over the limit: the cost is bounded by `limit`, not by the value's size."""
    if v is MISSING:
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
