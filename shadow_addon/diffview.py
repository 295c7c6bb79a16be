"""The comparison's differences as the dashboard lists them: mismatches by endpoint, the latest ones, and the
judgement per endpoint and field. Reads a page of `/diffs` (the mismatch store's JSON), cut to what a page shows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import figures

TEXT_LIMIT = 300  # characters of a free-form value shown in the differences table
DIFF_ROWS = 30  # endpoints listed
DIFF_RECORDS = 12  # latest mismatches listed
FIELD_ENDPOINTS = 12  # endpoints shown field by field
FIELD_ROWS = 15  # fields listed per endpoint


def view(diffs: Mapping[str, Any]) -> dict[str, Any]:
    """The differences section: endpoints by mismatch count, the latest mismatches, the per-field judgement."""
    groups = sorted(
        (g for g in diffs.get("groups", []) if isinstance(g, Mapping)),
        key=lambda g: (-int(g.get("mismatches", 0)), str(g.get("endpoint"))),
    )
    records = []
    for r in [r for r in diffs.get("records", []) if isinstance(r, Mapping)][:DIFF_RECORDS]:
        req = r.get("request") or {}
        records.append(
            {
                "at": str(r.get("at", ""))[11:19],
                "mapping": r.get("mapping"),
                "method": req.get("method", ""),
                "path": str(req.get("path", ""))[:TEXT_LIMIT],
                "statuses": (
                    (r.get("production") or {}).get("status", "–"),
                    (r.get("shadow") or {}).get("status", "–"),
                ),
                "lines": [str(d)[:TEXT_LIMIT] for d in (r.get("diffs") or [])[:6]],
            }
        )
    return {"groups": groups[:DIFF_ROWS], "records": records, "judgement": _judgement(diffs.get("judgement"))}


def _judgement(j: object) -> dict[str, Any] | None:
    """The per-field view: for each endpoint with differences, what differs, how often, against noise."""
    if not isinstance(j, Mapping):
        return None
    endpoints = []
    for e in [e for e in j.get("endpoints") or [] if isinstance(e, Mapping) and e.get("fields")][:FIELD_ENDPOINTS]:
        rows = [f for f in e.get("fields") or [] if isinstance(f, Mapping)]
        endpoints.append(
            {
                "mapping": e.get("mapping"),
                "endpoint": str(e.get("endpoint"))[:TEXT_LIMIT],
                "compared": e.get("compared"),
                "samples": e.get("noise_samples"),
                "reported": e.get("reported"),
                "provisional": bool(e.get("provisional")),
                "hint": e.get("hint") or "",
                "fields": [
                    {
                        "field": str(f.get("field"))[:TEXT_LIMIT],
                        "candidate": f.get("candidate"),
                        "rate": figures.number(f.get("rate")),
                        "noise": f.get("noise"),
                        "noise_rate": figures.number(f.get("noise_rate")),
                        "absolute": figures.number(f.get("absolute")),
                        "reported": bool(f.get("reported")),
                    }
                    for f in rows[:FIELD_ROWS]
                ],
                "more": max(0, len(rows) - FIELD_ROWS),
            }
        )
    return {
        "relative": j.get("relative_threshold"),
        "absolute": j.get("absolute_threshold"),
        "secondary": bool(j.get("secondary")),
        "endpoints": endpoints,
    }
