"""What is kept of a production answer to learn noise from: its print, every JSON node under a hash of its path,
linear in the body however deep it is (a path is named only when it is learned)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .fields import Path, is_index

OBJECT, ARRAY = "{}", "[]"  # fingerprint values of containers (leaves are ints)
ROOT_KEY = 0
MAX_DEPTH = 128  # a body nested deeper keeps no field detail (the diff compares such a subtree as one value)
NODE_BYTES = 256  # what one node of a print costs in memory (tracemalloc: ~241 bytes, rounded up)
PRINT_BYTES = 400  # what a print costs besides its nodes

# One node of a flattened body: (parent's key, segment, value hash or container marker, generalised key).
Node = tuple[int, str, int | str, int]


@dataclass(slots=True)
class Print:
    """What is kept of a production answer: enough to tell which fields changed, not the answer itself."""

    status: int
    headers: tuple[int, ...]  # hashes of the compared headers' values
    body: dict[int, Node] | str | None  # JSON: path key -> node; else size:sha256; None: not kept
    nodes: int
    sent: tuple[int, str]  # size and sha256 of the body as sent ("" when unknown): an identical answer teaches nothing

    @property
    def bytes(self) -> int:
        return PRINT_BYTES + self.nodes * NODE_BYTES


def flatten(doc: Any, max_nodes: int) -> dict[int, Node] | None:
    """Every node of a JSON document under a key that stands for its path: containers as markers, leaves as a
    hash (1 and 1.0 hash alike, true and 1 do not). A path is never built: a node's key is the hash of its
    parent's key and its segment, so the print is linear in the body however deep it is (a path is named, by
    walking up the parents, only when it is learned). None when it has more than `max_nodes` nodes or is nested
    deeper than MAX_DEPTH."""
    out: dict[int, Node] = {}
    stack: list[tuple[int, int, str, int, int, Any]] = [(ROOT_KEY, 0, "", ROOT_KEY, 0, doc)]
    while stack:
        key, parent, seg, gkey, depth, v = stack.pop()
        if len(out) + len(stack) + (len(v) if isinstance(v, dict | list) else 0) >= max_nodes or depth > MAX_DEPTH:
            return None  # before pushing a large container's children: the work stays within max_nodes
        if isinstance(v, dict):
            out[key] = (parent, seg, OBJECT, gkey)
            stack.extend(
                (hash((key, k)), key, k, hash((gkey, None if is_index(k) else k)), depth + 1, w) for k, w in v.items()
            )
        elif isinstance(v, list):
            out[key] = (parent, seg, ARRAY, gkey)
            # An index's general key is its parent's with a wildcard: every element shares it.
            stack.extend((hash((key, str(i))), key, str(i), hash((gkey, None)), depth + 1, w) for i, w in enumerate(v))
        else:
            # CPython hashes -1 as -2 (-1 is its error value): told apart, or -1 and -2 would be the same value.
            out[key] = (parent, seg, hash((type(v) is bool, type(v) is str, v, v == -1)), gkey)
    return out


def path_of(nodes: dict[int, Node], key: int) -> Path:
    segs: list[str] = []
    for _ in range(MAX_DEPTH + 2):  # bounded: prints are at most MAX_DEPTH deep
        if key == ROOT_KEY:
            break
        parent, seg, _, _ = nodes[key]
        segs.append(seg)
        key = parent
    return tuple(reversed(segs))
