"""The admin server's pages, each a function of the addon's state: `/`, `/metrics`, `/diag`, `/report`, `/diffs`."""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

from . import admin, dashboard, diag, metrics, report
from .compare.pairing import Pairing
from .compare.store import PAGE
from .mappingfiles import MappingFiles
from .metrics import Metrics
from .sender import Sender

DASHBOARD_RECORDS = 20  # stored mismatches the dashboard and /report show


class State(Protocol):
    """What the pages read: the addon's rooms."""

    files: MappingFiles
    metrics: Metrics
    sender: Sender | None
    pairing: Pairing | None


def pages(state: State) -> dict[str, admin.Page]:
    return {
        **dashboard.static_pages(),
        "/": lambda: ("text/html; charset=utf-8", dashboard.render(snapshot(state)).encode()),
        "/metrics": lambda: (metrics.CONTENT_TYPE, _metrics(state)),
        "/diag": lambda: ("application/json", _json(_diag(state).to_json())),
        "/report": lambda: ("text/plain; charset=utf-8", report_text(state).encode()),
        "/report.json": lambda: (
            "application/json",
            _json(report.to_json(report.comparison(state.files.table, state.metrics))),
        ),
        "/diffs": admin.QueryPage(lambda q: ("application/json", _json(_diffs(state, q)))),
    }


def snapshot(state: State) -> dashboard.Snapshot:
    """Everything the dashboard shows."""
    return dashboard.Snapshot(
        generated_at=time.time(),
        diag=_diag(state),
        comparison=tuple(report.comparison(state.files.table, state.metrics)),
        compare=state.metrics.compare_counts() if state.pairing else None,
        diffs=state.pairing.store.to_json(0, DASHBOARD_RECORDS) if state.pairing else None,
        writes=dict(getattr(state, "writes", {})),  # copies of writes per shadow Mapping (a dashboard note)
    )


def report_text(state: State) -> str:
    counts = state.metrics.compare_counts() if state.pairing else None
    diffs = state.pairing.store.to_json(0, DASHBOARD_RECORDS) if state.pairing else None
    return report.text_table(report.comparison(state.files.table, state.metrics), counts, diffs)


def _diag(state: State) -> diag.Diag:
    f = state.files
    return diag.snapshot(f.table, f.loaded, f.loaded_at, f.errors)


def _diffs(state: State, query: dict[str, str]) -> dict[str, Any]:
    """One page of stored mismatches, newest first: `?offset=N&limit=M` (M at most store.MAX_PAGE)."""
    if state.pairing is None:
        return {"enabled": False, "records": [], "groups": []}
    return state.pairing.store.to_json(_int(query.get("offset"), 0), _int(query.get("limit"), PAGE))


def _int(text: str | None, default: int) -> int:
    return int(text) if text is not None and text.isascii() and text.isdigit() and len(text) < 10 else default


def _metrics(state: State) -> bytes:
    gauges = metrics.sender_gauges(state.sender.occupancy()) if state.sender else []
    if state.pairing is not None:
        pending = float(len(state.pairing.pairs))
        gauges.append(("shadow_compare_pending", "Production replies held until their shadow answers.", {}, pending))
    return metrics.render(state.metrics, gauges)


def _json(doc: object) -> bytes:
    return json.dumps(doc, indent=1).encode()
