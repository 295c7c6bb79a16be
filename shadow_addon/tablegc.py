"""A large routing table kept out of CPython's cycle collector, which pauses every thread while it walks.

10,000 Mappings are ~140,000 tracked objects; a full (generation-2) collection walks each of them, and building
them is enough allocation to trigger one: ~70-130 ms during which the event loop serves nothing. So a table is
built with full collections held off (young ones still run and collect the event loop's short-lived garbage),
and frozen (`gc.freeze`) once installed: frozen objects are never walked again. A table holds no reference cycles,
so a frozen table, once replaced, is still freed by its reference count, in the worker thread (`dismantle`).

What else is tracked at the freeze is frozen with the table: the proxy's long-lived objects (as the start-up
freeze does) and what the requests in flight hold; a cycle among those is then left to its reference counts, a
cost of at most the objects in flight at one reload. So only a table large enough for its walk to be a pause is
frozen at a run-time reload (`worth_freezing`): a small one costs a full collection little, and a file edited
often must not keep what its reloads catch in flight.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

NO_FULL = 1 << 30  # a generation-2 threshold never reached while a table is built
YOUNG_ROUNDS = 2  # generation-0 collections per generation-1 one while a table is built (CPython's default: 10)
_lock = threading.Lock()
_held = 0  # builds holding off full collections (the threshold is process-wide)
_saved: tuple[int, int, int] | None = None


def hold() -> None:
    """From the start of a table's build (in any thread) to its freeze: young collections run (small ones), full
    ones wait.
    The threshold is process-wide: held builds are counted, and the last `release` puts it back."""
    global _held, _saved
    with _lock:
        if _held == 0:
            _saved = gc.get_threshold()
            # Nearly everything a build allocates survives: generation 1 would grow to ten rounds of it, each
            # collection of it a pause; promoted sooner, it stays small, and generation 2 is not walked.
            gc.set_threshold(_saved[0], min(_saved[1], YOUNG_ROUNDS), NO_FULL)
        _held += 1


def release() -> None:
    global _held, _saved
    with _lock:
        _held -= 1
        if _held == 0 and _saved is not None:
            gc.set_threshold(*_saved)
            _saved = None


@contextmanager
def no_full_collection() -> Iterator[None]:
    hold()
    try:
        yield
    finally:
        release()


FREEZE_AT = 1_000  # Mappings: ~14,000 tracked objects, a full collection's walk of them ~5-10 ms on this machine


def worth_freezing(mapping_count: int) -> bool:
    return mapping_count >= FREEZE_AT


def freeze() -> None:
    """After a new table is installed (O(1): CPython moves its generation lists to the permanent one)."""
    gc.freeze()


def dismantle(held: list[object]) -> None:
    """Drop an old table (and its load result), handed over as the only references in `held`, off the event loop
    and piece by piece: each group and Mapping is freed between two bytecodes, so the interpreter can give the
    loop its turn in between instead of freeing ~140,000 objects in one go."""
    pieces: list[object] = []
    for part in held:
        for name in ("groups", "mappings"):
            value = getattr(part, name, None)
            if isinstance(value, (list, tuple)):
                pieces.extend(value)
    held.clear()  # the containers go; what they held stays in `pieces`
    while pieces:
        pieces.pop()
