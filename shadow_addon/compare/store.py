"""The most recent mismatches with both answers, per-endpoint counts, and the JSON-lines report's lines."""

from __future__ import annotations

import codecs
import dataclasses
import json
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..budget import MemoryBudget
from .render import MAX_VALUE, clip
from .reply import Reply
from .result import Comparison

PREVIEW = 2048  # bytes of each body kept with a stored mismatch
MAX_HEADERS = 64  # headers of each answer kept with a stored mismatch, each clipped to MAX_VALUE
RECORD_BYTES = 1024  # what a stored record costs besides its bodies, headers and lines
PAGE = 50  # records per page of /diffs by default
MAX_PAGE = 200
OTHER = "(other)"


@dataclass(slots=True)
class _Group:
    compared: int = 0
    mismatches: int = 0
    noise: int = 0
    skipped: int = 0


def _snapshot(r: Reply | None, limit: int) -> tuple[Reply, bool] | None:
    """What a stored mismatch keeps of an answer: the answer with its body cut to the preview (the whole body may
    be up to the compare limit), and whether that preview is the whole body."""
    if r is None:
        return None
    headers = [(clip(k), clip(v)) for k, v in r.headers[:MAX_HEADERS]]
    if r.body is None or len(r.body) <= limit:
        return dataclasses.replace(r, headers=headers), r.body is not None
    return dataclasses.replace(r, body=r.body[:limit], headers=headers), False


def _bytes(snap: tuple[Reply, bool] | None) -> int:
    if snap is None:
        return 0
    r = snap[0]
    return (len(r.body) if r.body is not None else 0) + sum(len(k) + len(v) + 64 for k, v in r.headers)


def _side(snap: tuple[Reply, bool] | None) -> dict[str, Any] | None:
    if snap is None:
        return None
    r, whole = snap
    text: str | None = None
    binary = False
    if r.body is not None:
        charset = r.media()[1] or "utf-8"
        try:
            info = codecs.lookup(charset)
            if not getattr(info, "_is_text_encoding", True):
                raise LookupError(charset)  # base64, rot13, hex: codecs, not charsets
            # Incremental: a multi-byte character cut by the preview limit is dropped, not an error.
            text = info.incrementaldecoder().decode(r.body, final=whole)
            if not isinstance(text, str):
                raise LookupError(charset)
        except (LookupError, UnicodeDecodeError, ValueError):
            text, binary = None, True
    return {
        "status": r.status,
        "headers": [[k, v] for k, v in r.headers],
        "body_size": r.body_size,
        "body_sha256": r.body_sha256,
        "body_preview": text,
        "body_truncated": not whole,
        "body_binary": binary,
    }


def _at(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


class StoredMismatch(Mapping[str, Any]):
    """One stored mismatch, read as the record `/diffs` and the report show. Built when first read: a shadow
    that answers every copy differently makes a mismatch per request, most of them never looked at."""

    __slots__ = ("_parts", "_record", "size")

    def __init__(self, *parts: Any, size: int = 0) -> None:
        self._parts = parts
        self._record: dict[str, Any] | None = None
        self.size = size  # bytes held in the memory budget

    def _built(self) -> dict[str, Any]:
        if self._record is None:
            seq, t, mapping, endpoint, request, comparison, production, shadow = self._parts
            self._record = {
                "id": seq,
                "time": t,
                "at": _at(t),
                "mapping": mapping,
                "endpoint": endpoint,
                "request": request,
                "result": comparison.result,
                "kinds": sorted(comparison.kinds),
                "diffs": list(comparison.diffs),
                "noisy": list(comparison.noisy),
                "differences": [{"field": d.field, "kind": d.kind, "noise": d.noise} for d in comparison.differences],
                "production": _side(production),
                "shadow": _side(shadow),
            }
            self._parts = ()
        return self._record

    def __getitem__(self, key: str) -> Any:
        return self._built()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())


class MismatchStore:
    """The most recent mismatches, with both answers, and per (mapping, endpoint) counts that outlive them.
    Bounded: `capacity` records, `max_groups` endpoints (then each mapping's `(other)` bucket)."""

    def __init__(
        self, capacity: int = 200, max_groups: int = 1000, preview: int = PREVIEW, budget: MemoryBudget | None = None
    ) -> None:
        self.capacity = capacity
        self.records: deque[StoredMismatch] = deque()
        self.groups: dict[tuple[str, str], _Group] = {}
        self.max_groups = max_groups
        self.preview = preview
        self.budget = budget  # every record's bytes are held in it; a record that does not fit is counted only
        self.not_kept = 0
        self.seq = 0
        self.judgement: Callable[[], dict[str, Any]] | None = None  # per endpoint and field (compare.judge)

    def close(self) -> None:
        while self.records:
            self._drop(self.records.popleft())

    def _drop(self, r: StoredMismatch) -> None:
        if self.budget is not None:
            self.budget.release(r.size)

    def add(
        self,
        mapping: str,
        endpoint: str,
        request_summary: Mapping[str, Any],
        production: Reply | None,
        shadow: Reply | None,
        comparison: Comparison,
        now: float | None = None,
    ) -> StoredMismatch | None:
        """Count one comparison; keep it when it is a mismatch. Returns the stored record, else None."""
        key = (mapping, endpoint)
        g = self.groups.get(key)
        if g is None:
            if len(self.groups) >= self.max_groups:
                key = (mapping, OTHER)
            g = self.groups.setdefault(key, _Group())
        if comparison.result in ("skipped", "error"):
            g.skipped += 1
            return None
        g.compared += 1
        if comparison.result == "noise":
            g.noise += 1
        if comparison.result != "mismatch":
            return None
        g.mismatches += 1
        self.seq += 1
        t = time.time() if now is None else now
        p, s = _snapshot(production, self.preview), _snapshot(shadow, self.preview)
        lines = sum(len(d) for d in comparison.diffs) + sum(len(n) for n in comparison.noisy)
        size = RECORD_BYTES + _bytes(p) + _bytes(s) + lines + sum(len(d.field) + 64 for d in comparison.differences)
        while len(self.records) >= self.capacity:
            self._drop(self.records.popleft())
        if self.budget is not None and not self.budget.take(size):
            self.not_kept += 1
            return None
        summary = {k: clip(v, MAX_VALUE * 4) if isinstance(v, str) else v for k, v in request_summary.items()}
        record = StoredMismatch(self.seq, t, mapping, endpoint, summary, comparison, p, s, size=size)
        self.records.append(record)
        return record

    def to_json(self, offset: int = 0, limit: int = MAX_PAGE) -> dict[str, Any]:
        """For GET /diffs: a page of records, newest first (`offset` records skipped, at most `limit`, at most
        MAX_PAGE); groups by mismatch count, then name."""
        offset, limit = max(0, offset), max(0, min(limit, MAX_PAGE))
        groups: list[dict[str, Any]] = [
            {
                "mapping": m,
                "endpoint": e,
                "compared": g.compared,
                "mismatches": g.mismatches,
                "noise": g.noise,
                "skipped": g.skipped,
                "rate": g.mismatches / g.compared if g.compared else 0.0,
            }
            for (m, e), g in self.groups.items()
        ]
        groups.sort(key=lambda r: (-r["mismatches"], r["mapping"], r["endpoint"]))
        n = len(self.records)
        page = [self.records[n - 1 - i] for i in range(offset, min(n, offset + limit))]
        doc: dict[str, Any] = {
            "capacity": self.capacity,
            "total": n,
            "offset": offset,
            "limit": limit,
            "records": [dict(r) for r in page],
            "groups": groups,
        }
        if self.judgement is not None:
            doc["judgement"] = self.judgement()
        return doc


def record_line(record: Mapping[str, Any]) -> str:
    """One line of a JSON-lines report (newline included): a stored record without the body previews."""
    slim = {k: record[k] for k in ("at", "time", "mapping", "endpoint", "request", "result", "kinds", "diffs", "noisy")}
    for side in ("production", "shadow"):
        r = record.get(side)
        slim[side] = None if r is None else {k: r[k] for k in ("status", "body_size", "body_sha256")}
    return json.dumps(slim, ensure_ascii=False, separators=(",", ":")) + "\n"
