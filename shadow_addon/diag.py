"""The `/diag` document: the configuration now serving, as plain data (Emissary's diagnostics, in JSON)."""

from __future__ import annotations

from typing import Any

from . import explain
from .mappings import LoadResult
from .routing import Table


def canary_share(cumulative: list[int], i: int) -> int:
    """The percentage of a group's traffic Mapping i takes, from cumulative weights."""
    return cumulative[i] - (cumulative[i - 1] if i else 0)


def snapshot(
    table: Table,
    loaded: LoadResult | None,
    loaded_at: float,
    reload_errors: list[str],
) -> dict[str, Any]:
    groups: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for gi, g in enumerate(table.groups):
        cum = [w for _, w in g.production]
        share = {m.key: canary_share(cum, i) for i, (m, _) in enumerate(g.production)}
        groups.append(
            {
                "id": gi,
                "label": g.label,
                "mappings": [m.key for m in g.members],
                "shadow": g.shadow.key if g.shadow else None,
                "error": g.error,
                "routes": g.routes,
            }
        )
        for m in g.members:
            a = table.addresses[m.key]
            rows.append(
                {
                    "name": m.name,
                    "namespace": m.namespace,
                    "prefix": m.prefix,
                    "service": m.service,
                    "resolved": str(a),
                    "shadow": m.shadow,
                    "weight": m.weight,
                    "group": gi,
                    "canary_share": None if m.shadow else share.get(m.key, 0),
                    "active_shadow": m.shadow and g.shadow is m and bool(g.routes),  # no route: no copy
                    "source": m.source,
                    "ignored_fields": list(m.ignored_fields),
                }
            )
    errors = [{"mapping": None, "message": e} for e in (loaded.errors if loaded else [])]
    errors += [{"mapping": e.mapping, "message": e.message} for e in table.errors]
    errors += [{"mapping": None, "message": e} for e in reload_errors]
    return {
        "mappings": rows,
        "groups": groups,
        "errors": errors,
        "notices": (list(loaded.notices) if loaded else []) + explain.traps(table),
        "routes": explain.routes(table),
        "ignored": [{"mapping": m.key, "ambassador_id": list(m.ambassador_id)} for m in table.ignored],
        "files": list(loaded.files) if loaded else [],
        "loaded_at": loaded_at,
    }
