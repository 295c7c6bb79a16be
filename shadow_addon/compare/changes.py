"""What changed between two prints of production's answers to the same request, named as the diff names the
fields of a comparison, and learned as noise on the way: linear in the bodies."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from .fields import Path, general, pointer
from .noiseset import NoiseSet
from .prints import ARRAY, OBJECT, ROOT_KEY, Node, path_of

MAX_CHANGES = 64  # fields named per observation, as `jsondiff.MAX_FIELDS` per comparison; the rest are counted


@dataclass(frozen=True, slots=True)
class Changes:
    """What differs between production's answer to a request and its previous answer to the same request, named
    as the diff names the fields of a comparison (`status`, `header <name>`, `body`, JSON pointers with `*` for an
    array index, a changed array as one field when its length or only its order changed), so that production's
    own variation and a comparison with the shadow can be counted field by field alike. At most MAX_CHANGES
    fields are named; `more`: how many others changed. Empty: the same answer again."""

    fields: tuple[str, ...] = ()
    more: int = 0


class Found:
    """The fields an observation found changed, by general key, named (an O(depth) walk) only while fewer than
    MAX_CHANGES are named; the others are only counted."""

    __slots__ = ("named", "others")

    def __init__(self) -> None:
        self.named: dict[int | str, str] = {}  # by general key (a JSON field) or by name (the rest)
        self.others: set[int | str] = set()

    def add(self, gkey: int | str, name: Callable[[], str]) -> None:
        if gkey in self.named or gkey in self.others:
            return
        if len(self.named) < MAX_CHANGES:
            self.named[gkey] = name()
        else:
            self.others.add(gkey)

    def put(self, name: str) -> None:
        self.add(name, lambda: name)

    def changes(self) -> Changes:
        return Changes(tuple(self.named.values()), len(self.others))


def _is_leaf(v: int | str) -> bool:
    return not isinstance(v, str)  # containers are "{}" or "[]", leaves their hash


def body_changes(noise: NoiseSet, ob: dict[int, Node], nb: dict[int, Node], found: Found) -> None:
    """Learn from two prints of JSON bodies into `noise`, and name in `found` what changed as the diff would name
    it between them: a field whose kind changed covers what is beneath it (`type`), an array of another length is
    one field (`array length`), as is an array of the same scalars in another order (`order only`).

    Linear: every node is looked at a bounded number of times (prints list a parent before its children, so one
    pass carries "beneath a changed kind" down); a field is named (walking up its parents) only when it is learned,
    each at most once per mapping, or among the first MAX_CHANGES of this observation."""
    exact, generalised = noise.exact_keys, noise.general_keys
    paths: dict[int, Path] = {}  # walked up once per node at most

    def path(nodes: dict[int, Node], k: int) -> Path:
        p = paths.get(k)
        if p is None:
            p = paths[k] = path_of(nodes, k)
        return p

    def name(nodes: dict[int, Node], k: int) -> Callable[[], str]:
        return lambda: pointer(general(path(nodes, k)))

    under: set[int] = set()  # nodes beneath a field whose kind changed: the diff names that field only
    reordered: dict[int, list[int]] = {}  # array -> its elements whose scalar value changed
    for k, (parent, _, v, gk) in nb.items():
        was = ob.get(k)
        if was is None:
            if k != ROOT_KEY and parent in ob:  # where the difference starts
                if k not in exact and not noise.full:
                    exact.add(k)
                    noise.learn("path", path(nb, k))
                if parent not in under:
                    at = parent if nb[parent][2] == ARRAY else k  # an element more: the array's length
                    found.add(nb[at][3], name(nb, at))
            continue
        if k != ROOT_KEY and parent in under:
            under.add(k)
        if was[2] == v:
            continue
        if gk not in generalised and not noise.full:
            generalised.add(gk)
            noise.learn("path", general(path(nb, k)))
        if k != ROOT_KEY and parent in under:
            continue
        if not (_is_leaf(v) and _is_leaf(was[2])):
            under.add(k)  # another kind of value: what was beneath is not compared on its own
            found.add(gk, name(nb, k))
        elif k != ROOT_KEY and nb[parent][2] == ARRAY:
            reordered.setdefault(parent, []).append(k)  # named once it is known whether only the order changed
        else:
            found.add(gk, name(nb, k))
    for k, (parent, _, _, _) in ob.items():
        if k == ROOT_KEY or k in nb or parent not in nb:
            continue
        if k not in exact and not noise.full:
            exact.add(k)
            noise.learn("path", path(ob, k))
        if parent not in under:
            at, nodes = (parent, nb) if nb[parent][2] == ARRAY else (k, ob)  # an element fewer: the array's length
            found.add(nodes[at][3], name(nodes, at))
    if reordered:
        _reordered(ob, nb, reordered, found, name)


def _reordered(
    ob: dict[int, Node],
    nb: dict[int, Node],
    changed: dict[int, list[int]],
    found: Found,
    name: Callable[[dict[int, Node], int], Callable[[], str]],
) -> None:
    """Arrays with elements of another scalar value: one field when they hold the same scalars in another order
    (as `jsondiff._order_only` decides), else each such element."""
    elements: dict[int, tuple[Counter[int | str], Counter[int | str]]] = {a: (Counter(), Counter()) for a in changed}
    for side, nodes in ((0, ob), (1, nb)):
        for k, (parent, _, v, _) in nodes.items():
            counts = elements.get(parent)
            if counts is not None and k != ROOT_KEY:
                counts[side][v] += 1
    for array, keys in changed.items():
        before, after = elements[array]
        if before == after and ARRAY not in before and OBJECT not in before:  # the same scalars, reordered
            found.add(nb[array][3], name(nb, array))
        else:
            for k in keys:
                found.add(nb[k][3], name(nb, k))
