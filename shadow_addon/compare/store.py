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

from .diff import Comparison
from .reply import Reply

PREVIEW = 2048  # bytes of each body kept with a stored mismatch
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
    if r.body is None or len(r.body) <= limit:
        return r, r.body is not None
    return dataclasses.replace(r, body=r.body[:limit]), False


def _side(snap: tuple[Reply, bool] | None) -> dict[str, Any] | None:
    if snap is None:
        return None
    r, whole = snap
    text: str | None = None
    binary = False
    if r.body is not None:
        charset = r.media()[1] or "utf-8"
        try:
            # Incremental: a multi-byte character cut by the preview limit is dropped, not an error.
            text = codecs.getincrementaldecoder(charset)().decode(r.body, final=whole)
        except (LookupError, UnicodeDecodeError):
            binary = True
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

    __slots__ = ("_parts", "_record")

    def __init__(self, *parts: Any) -> None:
        self._parts = parts
        self._record: dict[str, Any] | None = None

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

    def __init__(self, capacity: int = 200, max_groups: int = 1000, preview: int = PREVIEW) -> None:
        self.records: deque[StoredMismatch] = deque(maxlen=capacity)
        self.groups: dict[tuple[str, str], _Group] = {}
        self.max_groups = max_groups
        self.preview = preview
        self.seq = 0
        self.judgement: Callable[[], dict[str, Any]] | None = None  # per endpoint and field (compare.judge)

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
        if comparison.result == "skipped":
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
        record = StoredMismatch(
            self.seq,
            t,
            mapping,
            endpoint,
            dict(request_summary),
            comparison,
            _snapshot(production, self.preview),
            _snapshot(shadow, self.preview),
        )
        self.records.append(record)
        return record

    def to_json(self) -> dict[str, Any]:
        """For GET /diffs: records newest first; groups by mismatch count, then name."""
        groups = [
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
        records = [dict(r) for r in reversed(self.records)]
        doc = {"capacity": self.records.maxlen, "records": records, "groups": groups}
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
