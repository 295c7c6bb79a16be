"""`explain`: the routing table in route order, with a warning for each trap (pure), the CLI, and /diag."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from support import mapping, run_process, write_mappings

from shadow_addon import diag, explain, figures, mappings, report, routing
from shadow_addon.metrics import Metrics


def M(name: str, **kw: object) -> mappings.Mapping:
    return mappings.build_mapping(name, "default", "t", {"service": name + "-svc", **kw})


def test_routes_in_order_with_weights_and_shadow() -> None:
    """ir.py ordered_groups order; cumulative weights (irbasemappinggroup.py); the shadow's own weight
    (v3route.py request_mirror_policies)."""
    t = routing.build_table(
        [
            M("quote", prefix="/backend/"),
            M("quotev2", prefix="/backend/", weight=10),
            M("next", prefix="/backend/", shadow=True, weight=25),
            M("all", prefix="/"),
        ]
    )
    rs = explain.routes(t)
    assert [r["label"] for r in rs] == ["/backend/", "/"]
    assert rs[0]["production"] == [
        {"name": "quotev2.default", "service": "quotev2-svc", "cumulative_weight": 10, "share": 10},
        {"name": "quote.default", "service": "quote-svc", "cumulative_weight": 100, "share": 90},
    ]
    assert rs[0]["shadow"] == {"name": "next.default", "service": "next-svc", "weight": 25}
    text = explain.text(t)
    assert text.index("quotev2.default") < text.index("quote.default ") < text.index("prefix /\n")
    assert "copies 25% of the requests" in text and "Warnings" not in text


def test_route_views_are_typed_and_their_json_is_the_diag_routes() -> None:
    t = routing.build_table(
        [
            M("a", prefix="/a/", headers={"x-k": "v"}, query_parameters={"q": "1"}, precedence=2),
            M("a-shadow", prefix="/a/", headers={"x-k": "v"}, query_parameters={"q": "1"}, precedence=2, shadow=True),
            M("lone", prefix="/lone/", shadow=True, weight=150),
        ]
    )
    views = explain.route_views(t)
    first, lone = views
    assert first.match.kind == "prefix" and first.match.prefix == "/a/" and first.match.precedence == 2
    assert first.match.text() == "prefix /a/, header x-k = 'v', query q = '1', precedence 2"
    assert first.production == (explain.Production("a.default", "a-svc", 100, 100),)
    assert first.shadow == explain.Shadow("a-shadow.default", "a-shadow-svc", 100) and first.routes
    assert lone.shadow is not None and lone.shadow.weight == 150 and not lone.routes and lone.production == ()
    doc = [v.to_json() for v in views]
    assert doc == explain.routes(t) == json.loads(json.dumps(doc))
    assert doc[0]["match"] == {
        "prefix": "/a/",
        "headers": [{"name": "x-k", "value": "v", "regex": False}],
        "query_parameters": [{"name": "q", "value": "1", "regex": False}],
        "precedence": 2,
    }
    assert diag.snapshot(t, None, 0.0, []).to_json()["routes"] == doc


def test_shadow_alone_names_the_mapping_it_was_meant_for_and_the_field() -> None:
    """V3Route.generate: a group with only a shadow has no route; the separating field is in _group_id."""
    t = routing.build_table(
        [
            M("api", prefix="/api/", hostname="*"),
            M("api-shadow", prefix="/api/", shadow=True),
            M("orders", prefix="/orders/"),
            M("orders-shadow", prefix="/orders/", method="POST", shadow=True),
        ]
    )
    w = explain.warnings(t)
    assert (
        "shadow api-shadow.default is alone in its group: it has no route, so it copies nothing; it was probably "
        "meant for api.default (same prefix), separated by no hostname vs hostname '*'"
    ) in w
    assert any(x.startswith("shadow orders-shadow.default is alone") and "method POST vs no method" in x for x in w)
    assert "no route: only a shadow" in explain.text(t)


def test_every_trap_is_warned() -> None:
    """Second shadow (irhttpmappinggroup.py add_mapping), weights over 100 (normalize_weights_in_mappings),
    ambassador_id (config.py good_ambassador_id), fields not honoured."""
    t = routing.build_table(
        [
            M("a", prefix="/a/", weight=60, cors={"origins": "*"}),
            M("b", prefix="/a/", weight=60),
            M("s1", prefix="/a/", shadow=True),
            M("s2", prefix="/a/", shadow=True),
            M("blue", prefix="/b/", ambassador_id="blue"),
        ]
    )
    w = "\n".join(explain.warnings(t))
    assert "cannot accept s2 as second shadow after s1" in w
    assert "Total weight of mappings exceeds 100, please reconfigure for correct behavior..." in w
    assert "Mapping blue.default ignored: ambassador_id blue does not include 'default'" in w
    assert "Mapping a.default: not honoured (ignored): cors" in w


def test_host_notice_only_when_host_matching_cannot_work() -> None:
    t = routing.build_table([M("h", prefix="/", hostname="a.example.com")])
    assert explain.host_notice(t, keep_host=True) is None
    assert "cannot match" in (explain.host_notice(t, keep_host=False) or "")
    assert explain.host_notice(routing.build_table([M("p", prefix="/")]), keep_host=False) is None


@pytest.mark.e2e
def test_mitmshadow_explain_command(tmp_path: Path) -> None:
    """The CLI: text by default, JSON with --json, exit status 1 only for a file that cannot be read."""
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("api", prefix="/api/", service="api", hostname="*"),
        mapping("api-shadow", prefix="/api/", service="api-next", shadow=True),
    )
    cmd = [sys.executable, "-m", "shadow_addon.cli", "explain"]
    r = run_process([*cmd, str(m)], 60)
    assert r.returncode == 0, r.stderr
    assert "shadow api-shadow.default is alone in its group" in r.stdout
    r = run_process([*cmd, "--json", str(m)], 60)
    doc = json.loads(r.stdout)
    assert [x["label"] for x in doc["routes"]] == ["/api/ host *", "/api/"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [Mapping\n")
    r = run_process([*cmd, str(bad)], 60)
    assert r.returncode == 1 and "YAML syntax error" in r.stdout


def test_diag_has_routes_and_notices(tmp_path: Path, upstream, proxy) -> None:
    """/diag carries the same data ("routes"), the traps as notices, and invalid Mappings as errors while the
    others serve (config.py: an invalid resource is left out)."""
    prod, api = upstream("prod"), upstream("api")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("api", prefix="/api/", service="api", hostname="*", rewrite=""),
        mapping("api-shadow", prefix="/api/", service="api-next", shadow=True),
        mapping("broken", prefix="/broken/", service="api", weight="ten"),
    )
    p = proxy(f"http://{prod.address}", sets={"mappings": str(m), "mapping_services": [f"api={api.address}"]})
    d = json.loads(p.admin("/diag")[1])
    assert [r["label"] for r in d["routes"]] == ["/api/ host *", "/api/"]
    assert any("api-shadow.default is alone in its group" in n for n in d["notices"])
    assert any("weight must be an integer 0..100, got 'ten'" in e["message"] for e in d["errors"])
    assert json.loads(p.request("GET", "/api/x")[2])["name"] == "api"
    assert json.loads(p.request("GET", "/broken/x")[2])["name"] == "prod"


def test_a_shadow_prefix_that_nearly_matches_names_the_mapping_it_was_meant_for() -> None:
    """`/orders` and `/orders/` are two prefixes, so two groups (irhttpmapping.py _group_id); the shadow's has no
    production Mapping and no route (V3Route.generate), and every view says it copies nothing."""
    t = routing.build_table(
        [M("orders", prefix="/orders/"), M("orders-next", prefix="/orders", shadow=True, weight=50)]
    )
    assert explain.lonely_shadows(t) == [
        "shadow orders-next.default is alone in its group: it has no route, so it copies nothing; it was probably "
        "meant for orders.default: prefix /orders/ vs /orders (a prefix matches the path's start as written, "
        "trailing slash and case included)"
    ]
    assert "weight 50: copies nothing (no route)" in explain.text(t)
    d = diag.snapshot(t, None, 0.0, [])
    assert [(m.name, m.active_shadow) for m in d.mappings if m.shadow] == [("orders-next", False)]
    rows = report.comparison(t, Metrics())
    assert figures.resource(rows[0], None)["share"] == "nothing: its group has no production route"
    assert "copies     nothing: its group has no production route" in report.text_table(rows)
    ok = routing.build_table([M("orders", prefix="/orders/"), M("next", prefix="/orders/", shadow=True, weight=50)])
    assert figures.resource(report.comparison(ok, Metrics())[0], None)["share"] == "50 % of requests"
    assert [m.active_shadow for m in diag.snapshot(ok, None, 0.0, []).mappings if m.shadow] == [True]


def test_columns_stay_aligned_with_long_names() -> None:
    t = routing.build_table(
        [
            M("api", prefix="/api/"),
            M("payments-authorization-service-canary", prefix="/api/", weight=10),
            M(
                "payments-authorization-service-shadow-for-the-next-release-candidate",
                prefix="/api/",
                shadow=True,
                service="next",
            ),
        ]
    )
    lines = [x for x in explain.text(t).splitlines() if "->" in x]
    assert len(lines) == 3
    assert len({x.index("->") for x in lines}) == 1  # one column for the arrows, whatever the names' lengths
    assert len({x.index("cumulative") for x in lines if "cumulative" in x} | {lines[2].index("weight")}) == 1
    assert "     shadow payments-authorization-service-shadow-for-the-next-release-candidate.default\n" in explain.text(
        t
    )


@pytest.mark.e2e
def test_explain_shows_the_mappings_of_an_annotated_service(tmp_path: Path) -> None:
    """A Service carrying getambassador.io/config used to explain as "(no Mappings)"."""
    svc = tmp_path / "svc.yaml"
    svc.write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: quote\n  namespace: shop\n  annotations:\n"
        "    getambassador.io/config: |\n      apiVersion: getambassador.io/v3alpha1\n      kind: Mapping\n"
        "      name: quote-backend\n      prefix: /backend/\n      service: quote:80\n"
    )
    r = run_process([sys.executable, "-m", "shadow_addon.cli", "explain", str(svc)], 60)
    assert r.returncode == 0, r.stderr
    assert "(no Mappings)" not in r.stdout
    assert "quote-backend.shop" in r.stdout and "-> quote.shop:80" in r.stdout, r.stdout


def _loaded_with_errors() -> tuple[routing.Table, mappings.LoadResult]:
    """A duplicate of a Mapping that serves, an invalid Mapping, and a document that is not one."""
    doc = "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: {}}}\nspec: {{{}}}\n"
    text = "---\n".join(
        [
            doc.format("api", "prefix: /api/, service: api"),
            doc.format("api", "prefix: /v2/, service: api"),
            doc.format("broken", "prefix: /b/, service: b, weight: ten"),
            "just text\n",
        ]
    )
    loaded = mappings.parse_text(text, "m.yaml")
    mappings.check_duplicates(loaded)
    return routing.build_table(loaded.mappings), loaded


def test_explain_shows_a_load_error_with_its_mapping() -> None:
    t, loaded = _loaded_with_errors()
    lines = explain.text(t, loaded).splitlines()
    api = next(i for i, line in enumerate(lines) if "api.default" in line)
    assert lines[api + 1] == (
        "       error: m.yaml doc 2 (Mapping api.default): duplicate name, already defined at m.yaml doc 1"
    )
    warnings = lines[lines.index("Warnings:") :]
    assert "  - m.yaml doc 3 (Mapping broken.default): weight must be an integer 0..100, got 'ten'" in warnings
    assert "  - m.yaml doc 4: document must be a mapping, got str" in warnings
    assert not any("duplicate" in w for w in warnings)


def test_diag_attaches_each_load_error_to_its_mapping() -> None:
    t, loaded = _loaded_with_errors()
    d = diag.snapshot(t, loaded, 0.0, []).to_json()
    (row,) = d["mappings"]
    assert row["errors"] == ["m.yaml doc 2 (Mapping api.default): duplicate name, already defined at m.yaml doc 1"]
    assert [(e["mapping"], e["file"], e["doc"], e["field"]) for e in d["errors"]] == [
        ("broken.default", "m.yaml", 3, "weight"),
        (None, "m.yaml", 4, None),
        ("api.default", "m.yaml", 2, None),
    ]
    assert d["errors"][1]["message"] == "m.yaml doc 4: document must be a mapping, got str"


def test_the_explain_document_round_trips_through_json() -> None:
    t, loaded = _loaded_with_errors()
    e = explain.Explanation.of(t, loaded)
    doc = e.to_json()
    assert json.loads(json.dumps(doc)) == doc and list(doc) == ["routes", "warnings", "errors"]
    assert doc["routes"] == explain.routes(t) and doc["warnings"] == explain.warnings(t)
    assert doc["errors"] == [str(x) for x in loaded.errors] and isinstance(e.errors[0], mappings.LoadError)
