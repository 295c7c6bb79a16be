"""The dashboard page as a pure function of a `Snapshot` (see `pages.snapshot`).

The page's parts are computed as plain data (here, a resource's figures in `figures`, the comparison's
differences in `diffview`); `templates/dashboard.html` lays them out with autoescaping on,
so Mapping names, prefixes, services and diffs from user files and traffic can never become markup. Styles are
a static file (`static/dashboard.css`), histograms inline SVG, no scripts: the page works under a
`default-src 'none'` content security policy, offline and behind any proxy. Figures carry `data-role` /
`data-metric` / `data-value` attributes so a test (or a scraper) can read them without parsing the text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from . import diffview, figures
from .diag import Diag
from .figures import data_value, fmt_age, fmt_int, fmt_pct, fmt_time
from .report import Row

HERE = Path(__file__).resolve().parent
REFRESH_SECONDS = 5

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=jinja2.select_autoescape(["html"], default=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
STATIC = {"/static/dashboard.css": ("text/css; charset=utf-8", HERE / "static" / "dashboard.css")}


def static_pages() -> dict[str, Callable[[], tuple[str, bytes]]]:
    """The page's static files, read once, for the admin server."""
    return {path: _page(ctype, file.read_bytes()) for path, (ctype, file) in STATIC.items()}


def _page(ctype: str, body: bytes) -> Callable[[], tuple[str, bytes]]:
    return lambda: (ctype, body)


_ENV.filters.update(dv=data_value, count=fmt_int, pct=fmt_pct)


# ---------------------------------------------------------------------------------------------- view data


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the page shows: the `/diag` document, the report's rows, and the comparison's own data
    (`compare`: results per shadow Mapping; `diffs`: a page of `/diffs`), as the admin server serves them."""

    generated_at: float = 0.0
    diag: Diag = field(default_factory=Diag)
    comparison: tuple[Row, ...] = ()
    compare: Mapping[str, Mapping[str, int]] | None = None
    diffs: Mapping[str, Any] | None = None
    writes: Mapping[str, int] = field(default_factory=dict)  # copies of writes per shadow Mapping


def _header(snapshot: Snapshot, diag: Diag) -> dict[str, Any]:
    generated, loaded_at, files = snapshot.generated_at, diag.loaded_at, diag.files
    loaded = fmt_time(loaded_at)
    if loaded_at > 0 and generated > 0:
        loaded += f" ({fmt_age(generated - loaded_at)})"
    return {
        "files": files[:4],
        "more_files": max(0, len(files) - 4),
        "loaded": loaded,
        "loaded_at": loaded_at,
        "generated": fmt_time(generated),
        "generated_at": generated,
    }


def _tiles(diag: Diag, rows: Sequence[Row]) -> list[dict[str, Any]]:
    errors = len(diag.errors)
    prod = sum(r.production.requests for r in rows)
    shadow = sum(r.shadow.requests for r in rows)
    drops = sum(n for r in rows for n in r.drops.values())
    tiles = [
        ("mappings", "Mappings", len(diag.mappings), False),
        ("shadowed", "Shadowed resources", len(rows), False),
        ("config-errors", "Configuration errors", errors, errors > 0),
        ("production-requests", "Production requests", prod, False),
        ("shadow-requests", "Shadow requests", shadow, False),
        ("dropped", "Dropped copies", drops, drops > 0),
    ]
    return [{"key": k, "label": label, "value": v, "bad": bad} for k, label, v, bad in tiles]


def _mappings(diag: Diag) -> list[dict[str, Any]]:
    groups = {g.id: g.label for g in diag.groups}
    out = []
    previous_group: int | None = None
    for m in diag.mappings:
        if m.shadow:
            role = ("shadow", "shadow") if m.active_shadow else ("ignored", "shadow (ignored)")
        else:
            role = ("prod", "production")
        out.append(
            {
                "m": m,
                "key": m.key,
                "errors": m.errors,
                "group_start": m.group != previous_group and previous_group is not None,
                "role": role,
                "ignored": ", ".join(m.ignored_fields),
                "group_label": groups.get(m.group),
            }
        )
        previous_group = m.group
    return out


def _writes(writes: Mapping[str, int]) -> list[dict[str, Any]]:
    """Shadow Mappings that are sent copies of writes (a shadow sharing state with production is changed)."""
    return [{"mapping": m, "n": n} for m, n in sorted(writes.items()) if n > 0]


# ---------------------------------------------------------------------------------------------- page


def render(snapshot: Snapshot) -> str:
    """The whole page. Pure: the same snapshot gives the same bytes."""
    diag, rows = snapshot.diag, snapshot.comparison
    return _ENV.get_template("dashboard.html").render(
        refresh=REFRESH_SECONDS,
        header=_header(snapshot, diag),
        tiles=_tiles(diag, rows),
        errors=diag.errors,
        notices=diag.notices,
        resources=[figures.resource(r, snapshot.compare) for r in rows],
        diffs=diffview.view(snapshot.diffs) if snapshot.diffs is not None else None,
        writes=_writes(snapshot.writes),
        mappings=_mappings(diag),
    )
