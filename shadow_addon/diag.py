"""The `/diag` document: the configuration now serving, as plain data (Emissary's diagnostics, in JSON)."""

from __future__ import annotations

from typing import Any

from . import explain
from .mappings import LoadError, LoadResult, Mapping
from .routing import ConfigError, Table


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
    own: dict[str, list[str]] = {}  # each Mapping's errors, shown with it: invalid (a duplicate) or its group's
    for le in loaded.errors if loaded else []:
        if le.mapping is not None:
            own.setdefault(le.mapping, []).append(str(le))  # its one line: a duplicate's place is not the row's
    for ce in table.errors:
        own.setdefault(ce.mapping, []).append(ce.message)
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
                    "errors": own.get(m.key, []),
                }
            )
    by_key = {m.key: m for m in table.mappings}
    errors = [_load_error(e) for e in (loaded.errors if loaded else [])]
    errors += [_table_error(e, by_key.get(e.mapping)) for e in table.errors]
    errors += [_load_error(e) for e in reload_errors]
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


def _load_error(e: str) -> dict[str, Any]:
    """A load error where it is: its Mapping (None: the file's or the document's) and field, and its one line."""
    if not isinstance(e, LoadError):  # kept as text by MappingFiles; every load error is a LoadError
        return {"mapping": None, "message": e, "file": None, "doc": None, "field": None}
    return {"mapping": e.mapping, "message": str(e), "file": e.file or None, "doc": e.doc, "field": e.field}


def _table_error(e: ConfigError, m: Mapping | None) -> dict[str, Any]:
    """An error of a Mapping's group (a second shadow, weights over 100), at that Mapping's file and document."""
    file, doc = (m.file or None, m.doc) if m is not None else (None, None)
    return {"mapping": e.mapping, "message": e.message, "file": file, "doc": doc, "field": None}
