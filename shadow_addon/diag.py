"""The `/diag` document: the configuration now serving, as typed rows with their JSON (Emissary's diagnostics)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import explain
from .mappings import LoadError, LoadResult, Mapping
from .routing import ConfigError, Table


def canary_share(cumulative: list[int], i: int) -> int:
    """The percentage of a group's traffic Mapping i takes, from cumulative weights."""
    return cumulative[i] - (cumulative[i - 1] if i else 0)


@dataclass(frozen=True, slots=True)
class MappingRow:
    """One Mapping of a group, as `/diag` lists it, with its own errors."""

    name: str
    namespace: str
    prefix: str
    service: str
    resolved: str  # the address its requests go to (after `mapping_services`)
    shadow: bool
    weight: int | None
    group: int  # the index of its group in `groups`
    canary_share: int | None  # percent of its group's traffic; None for a shadow
    active_shadow: bool  # the shadow its group copies to (a group without a route copies nothing)
    source: str  # file, document (and item), for messages
    ignored_fields: tuple[str, ...]
    errors: tuple[str, ...]  # its load errors (one line each) and its group's errors about it

    @property
    def key(self) -> str:
        return f"{self.name}.{self.namespace}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "prefix": self.prefix,
            "service": self.service,
            "resolved": self.resolved,
            "shadow": self.shadow,
            "weight": self.weight,
            "group": self.group,
            "canary_share": self.canary_share,
            "active_shadow": self.active_shadow,
            "source": self.source,
            "ignored_fields": list(self.ignored_fields),
            "errors": list(self.errors),
        }


@dataclass(frozen=True, slots=True)
class GroupRow:
    id: int
    label: str
    mappings: tuple[str, ...]  # name.namespace of its members
    shadow: str | None
    error: str | None
    routes: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "mappings": list(self.mappings),
            "shadow": self.shadow,
            "error": self.error,
            "routes": self.routes,
        }


@dataclass(frozen=True, slots=True)
class ErrorRow:
    """One configuration error and where it is: its Mapping (None: the file's or a document's), file, document
    and field when known."""

    mapping: str | None
    message: str  # a load error's one line; a group's error about a Mapping without the Mapping's name
    file: str | None = None
    doc: int | None = None
    field: str | None = None

    @classmethod
    def of_load(cls, e: str) -> ErrorRow:
        if not isinstance(e, LoadError):  # kept as text by MappingFiles; every load error is a LoadError
            return cls(None, e)
        return cls(e.mapping, str(e), e.file or None, e.doc, e.field)

    @classmethod
    def of_group(cls, e: ConfigError, m: Mapping | None) -> ErrorRow:
        """An error of a Mapping's group (a second shadow, weights over 100), at that Mapping's file and document."""
        return cls(e.mapping, e.message, (m.file or None) if m else None, m.doc if m else None)

    def to_json(self) -> dict[str, Any]:
        return {
            "mapping": self.mapping,
            "message": self.message,
            "file": self.file,
            "doc": self.doc,
            "field": self.field,
        }


@dataclass(frozen=True, slots=True)
class Ignored:
    """A Mapping for another `ambassador_id`."""

    mapping: str
    ambassador_id: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"mapping": self.mapping, "ambassador_id": list(self.ambassador_id)}


@dataclass(frozen=True, slots=True)
class Diag:
    """The `/diag` document; the dashboard reads the same."""

    mappings: tuple[MappingRow, ...] = ()
    groups: tuple[GroupRow, ...] = ()
    errors: tuple[ErrorRow, ...] = ()  # every error, with its Mapping when it has one
    notices: tuple[str, ...] = ()
    routes: tuple[explain.Route, ...] = ()
    ignored: tuple[Ignored, ...] = ()
    files: tuple[str, ...] = ()
    loaded_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "mappings": [m.to_json() for m in self.mappings],
            "groups": [g.to_json() for g in self.groups],
            "errors": [e.to_json() for e in self.errors],
            "notices": list(self.notices),
            "routes": [r.to_json() for r in self.routes],
            "ignored": [i.to_json() for i in self.ignored],
            "files": list(self.files),
            "loaded_at": self.loaded_at,
        }


def snapshot(
    table: Table,
    loaded: LoadResult | None,
    loaded_at: float,
    reload_errors: list[str],
) -> Diag:
    own: dict[str, list[str]] = {}  # each Mapping's errors, shown with it: invalid (a duplicate) or its group's
    for le in loaded.errors if loaded else []:
        if le.mapping is not None:
            own.setdefault(le.mapping, []).append(str(le))  # its one line: a duplicate's place is not the row's
    for ce in table.errors:
        own.setdefault(ce.mapping, []).append(ce.message)
    groups: list[GroupRow] = []
    rows: list[MappingRow] = []
    for gi, g in enumerate(table.groups):
        cum = [w for _, w in g.production]
        share = {m.key: canary_share(cum, i) for i, (m, _) in enumerate(g.production)}
        groups.append(
            GroupRow(
                gi, g.label, tuple(m.key for m in g.members), g.shadow.key if g.shadow else None, g.error, g.routes
            )
        )
        for m in g.members:
            rows.append(
                MappingRow(
                    name=m.name,
                    namespace=m.namespace,
                    prefix=m.prefix,
                    service=m.service,
                    resolved=str(table.addresses[m.key]),
                    shadow=m.shadow,
                    weight=m.weight,
                    group=gi,
                    canary_share=None if m.shadow else share.get(m.key, 0),
                    active_shadow=m.shadow and g.shadow is m and bool(g.routes),  # no route: no copy
                    source=m.source,
                    ignored_fields=m.ignored_fields,
                    errors=tuple(own.get(m.key, ())),
                )
            )
    by_key = {m.key: m for m in table.mappings}
    errors = [ErrorRow.of_load(e) for e in (loaded.errors if loaded else [])]
    errors += [ErrorRow.of_group(e, by_key.get(e.mapping)) for e in table.errors]
    errors += [ErrorRow.of_load(e) for e in reload_errors]
    return Diag(
        mappings=tuple(rows),
        groups=tuple(groups),
        errors=tuple(errors),
        notices=(*(loaded.notices if loaded else ()), *explain.traps(table)),
        routes=tuple(explain.route_views(table)),
        ignored=tuple(Ignored(m.key, m.ambassador_id) for m in table.ignored),
        files=tuple(loaded.files) if loaded else (),
        loaded_at=loaded_at,
    )
