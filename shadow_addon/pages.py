"""The admin server's pages, each a function of the addon's state: `/`, `/metrics`, `/diag`, `/report`, `/diffs`."""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

from . import admin, dashboard, diag, metrics, report
from .compare.pairing import Pairing
from .mappingfiles import MappingFiles
from .metrics import Metrics
from .sender import Sender


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
        "/diag": lambda: ("application/json", _json(_diag(state))),
        "/report": lambda: ("text/plain; charset=utf-8", report_text(state).encode()),
        "/report.json": lambda: ("application/json", _json(report.comparison(state.files.table, state.metrics))),
        "/diffs": lambda: ("application/json", _json(_diffs(state))),
    }


def snapshot(state: State) -> dict[str, object]:
    """Everything the dashboard shows, as plain data."""
    return {
        "generated_at": time.time(),
        "diag": _diag(state),
        "comparison": report.comparison(state.files.table, state.metrics),
        "compare": state.metrics.compare_counts() if state.pairing else None,
        "diffs": state.pairing.store.to_json() if state.pairing else None,
        "writes": dict(getattr(state, "writes", {})),  # copies of writes per shadow Mapping (a dashboard note)
    }


def report_text(state: State) -> str:
    counts = state.metrics.compare_counts() if state.pairing else None
    diffs = state.pairing.store.to_json() if state.pairing else None
    return report.text_table(report.comparison(state.files.table, state.metrics), counts, diffs)


def _diag(state: State) -> dict[str, Any]:
    f = state.files
    return diag.snapshot(f.table, f.loaded, f.loaded_at, f.errors)


def _diffs(state: State) -> dict[str, Any]:
    return state.pairing.store.to_json() if state.pairing else {"enabled": False, "records": [], "groups": []}


def _metrics(state: State) -> bytes:
    gauges = state.sender.gauges() if state.sender else []
    if state.pairing is not None:
        pending = float(len(state.pairing.pairs))
        gauges.append(("shadow_compare_pending", "Production replies held until their shadow answers.", {}, pending))
    return metrics.render(state.metrics, gauges)


def _json(doc: object) -> bytes:
    return json.dumps(doc, indent=1).encode()
