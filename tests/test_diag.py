"""The `/diag` document as typed rows: its JSON, key for key, and errors attached to their Mapping."""

from __future__ import annotations

import dataclasses
import json

from support import M

from shadow_addon import diag, mappings, routing


def _keys_are_fields(view: object, doc: dict[str, object]) -> None:
    """Every field of a view is a key of its JSON, in field order (a field added is a key added)."""
    assert dataclasses.is_dataclass(view)
    assert list(doc) == [f.name for f in dataclasses.fields(view)], type(view).__name__


def test_the_diag_document_round_trips_through_json() -> None:
    loaded = mappings.LoadResult()
    loaded.files.append("m.yaml")
    loaded.notices.append("m.yaml doc 4: skipped kind Host (only Mappings are used)")
    loaded.errors.append(
        mappings.LoadError.at("m.yaml doc 3 (Mapping b.default)", "weight must be", "m.yaml", 3, "b.default", "weight")
    )
    table = routing.build_table(
        [M("api", weight=10), M("api2"), M("s", shadow=True), M("s2", shadow=True), M("blue", ambassador_id="blue")]
    )
    d = diag.snapshot(table, loaded, 1_700_000_000.5, ["m.yaml: no such file or directory"])
    doc = d.to_json()
    assert json.loads(json.dumps(doc)) == doc
    assert list(doc) == ["mappings", "groups", "errors", "notices", "routes", "ignored", "files", "loaded_at"]
    _keys_are_fields(d, doc)
    _keys_are_fields(d.mappings[0], doc["mappings"][0])
    _keys_are_fields(d.groups[0], doc["groups"][0])
    _keys_are_fields(d.errors[0], doc["errors"][0])
    _keys_are_fields(d.ignored[0], doc["ignored"][0])
    assert doc["mappings"][0] == {
        "name": "api",
        "namespace": "default",
        "prefix": "/api/",
        "service": "api-svc",
        "resolved": "http://api-svc:80",
        "shadow": False,
        "weight": 10,
        "group": 0,
        "canary_share": 10,
        "active_shadow": False,
        "source": "m.yaml doc 1",
        "ignored_fields": [],
        "errors": [],
    }
    assert doc["groups"] == [
        {
            "id": 0,
            "label": "/api/",
            "mappings": ["api.default", "api2.default", "s.default", "s2.default"],
            "shadow": "s.default",
            "error": None,  # the second shadow is an error about s2, not of the group
            "routes": True,
        }
    ]
    assert doc["errors"] == [
        {
            "mapping": "b.default",
            "message": "m.yaml doc 3 (Mapping b.default): weight must be",
            "file": "m.yaml",
            "doc": 3,
            "field": "weight",
        },
        {
            "mapping": "s2.default",
            "message": "cannot accept s2 as second shadow after s",
            "file": None,
            "doc": None,
            "field": None,
        },
        {"mapping": None, "message": "m.yaml: no such file or directory", "file": None, "doc": None, "field": None},
    ]
    assert doc["mappings"][3]["errors"] == ["cannot accept s2 as second shadow after s"]
    assert doc["ignored"] == [{"mapping": "blue.default", "ambassador_id": ["blue"]}]
    assert doc["routes"] == [r.to_json() for r in d.routes] and doc["routes"][0]["label"] == "/api/"
    assert (doc["files"], doc["loaded_at"]) == (["m.yaml"], 1_700_000_000.5)
    assert doc["notices"][0].startswith("m.yaml doc 4")


def test_an_empty_diag() -> None:
    doc = diag.snapshot(routing.Table(), None, 0.0, []).to_json()
    assert doc == {
        "mappings": [],
        "groups": [],
        "errors": [],
        "notices": [],
        "routes": [],
        "ignored": [],
        "files": [],
        "loaded_at": 0.0,
    }
    assert diag.Diag().to_json() == doc
