"""The dashboard page as a pure function: snapshots built by hand and by the real diag/report functions."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest
from support import M, cell, parse, real_snapshot, resource

from shadow_addon import compare, dashboard, diag, figures, mappings, report, routing
from shadow_addon.metrics import BUCKETS, SHADOW, Metrics

EVIL = "<script>alert(1)</script>\"'&"


# ---------------------------------------------------------------------------------------------- tests


def test_figures_equal_the_comparison_they_come_from() -> None:
    snap, _ = real_snapshot()
    page = parse(dashboard.render(snap))
    row = snap.comparison[0]
    assert resource(page).attrs["data-shadow-mapping"] == "api-shadow"
    for role in ("production", "shadow"):
        for metric in ("requests", "errors", "error_rate", "p50", "p90", "p99"):
            want = getattr(getattr(row, role), metric)
            got = cell(page, role, metric).attrs["data-value"]
            assert (float(got) if got else None) == want, (role, metric)
    assert cell(page, "production", "requests").text == "20"
    assert cell(page, "production", "error_rate").text == "20.0 %"
    assert cell(page, "shadow", "error_rate").text == "50.0 %"
    # The shadow is worse on errors and latency: those figures are marked, production's are not.
    assert "worse" in cell(page, "shadow", "error_rate").attrs["class"].split()
    assert "worse" in cell(page, "shadow", "p50").attrs["class"].split()
    assert "worse" not in cell(page, "production", "error_rate").attrs["class"].split()
    codes = {
        (n.attrs["data-role"], n.attrs["data-code"]): int(n.attrs["data-value"])
        for n in page.find_all("span", class_="code")
    }
    assert codes == {("production", "200"): 16, ("production", "500"): 4, ("shadow", "200"): 5, ("shadow", "error"): 5}
    drops = {n.attrs["data-reason"]: n.attrs["data-value"] for n in page.find_all(data_metric="drops")}
    assert drops == {"overload": "2", "timeout": "1"}
    tiles = {
        n.attrs["data-metric"]: int(n.attrs["data-value"])
        for n in page.one(id="summary").find_all("div", class_="tile")
    }
    assert tiles == {
        "mappings": 4,
        "shadowed": 1,
        "config-errors": 1,
        "production-requests": 20,
        "shadow-requests": 10,
        "dropped": 3,
    }


def test_histogram_bars_follow_the_counts_of_both_roles() -> None:
    snap, _ = real_snapshot()
    page = parse(dashboard.render(snap))
    svg = resource(page).one("svg", class_="hist")
    row = snap.comparison[0]
    for role in ("production", "shadow"):
        rects = svg.find_all("rect", data_role=role)
        counts = list(getattr(row, role).counts)
        assert len(rects) == len(BUCKETS) + 1 == len(counts)
        assert [int(r.attrs["data-count"]) for r in rects] == counts
        heights = [float(r.attrs["height"]) for r in rects]
        # Taller bar, larger share: the drawing is ordered as the data is.
        for i in range(len(counts)):
            for j in range(len(counts)):
                if counts[i] > counts[j]:
                    assert heights[i] > heights[j]
                elif counts[i] == counts[j]:
                    assert heights[i] == heights[j]
        assert all(h == 0 for h, c in zip(heights, counts, strict=True) if c == 0)
    # Shares, not counts: production's two buckets of 10/20 and the shadow's one of 10/10 are drawn 1:2.
    prod_h = max(float(r.attrs["height"]) for r in svg.find_all("rect", data_role="production"))
    shadow_h = max(float(r.attrs["height"]) for r in svg.find_all("rect", data_role="shadow"))
    assert shadow_h == pytest.approx(2 * prod_h, rel=0.01)
    labels = [t.text for t in svg.find_all("text")]
    assert "≤0.1 ms" in labels and "0.25 ms" in labels and "1 ms" in labels and "2.5 ms" in labels
    assert "10 s" in labels and ">10 s" in labels
    assert "latency (bucket upper bound)" in labels and "% of the role's requests" in labels


def test_second_shadow_error_is_listed_and_its_row_highlighted() -> None:
    snap, _ = real_snapshot()
    page = parse(dashboard.render(snap))
    msg = "cannot accept z-second as second shadow after api-shadow"
    errors = page.one("section", id="errors")
    assert errors.one("li", data_mapping="z-second.default").text == f"z-second.default: {msg}"
    bad = page.one("tr", data_mapping="z-second.default")
    assert "row-error" in bad.attrs["class"].split() and bad.attrs["data-error"] == "true"
    assert msg in bad.text and "shadow (ignored)" in bad.text
    good = page.one("tr", data_mapping="api-shadow.default")
    assert good.attrs["data-error"] == "false" and "row-error" not in good.attrs.get("class", "")
    assert page.one("section", id="notices").text.endswith("not a Mapping (kind Host), skipped")
    assert page.one("dd", id="files").text == "/etc/shadow/mappings.yaml"
    assert page.one("dd", id="loaded-at").text == "2023-11-14 22:13:20 UTC (1 min ago)"
    assert page.one("dd", id="generated-at").text == "2023-11-14 22:15:00 UTC"


def test_mappings_table_columns() -> None:
    table = routing.build_table([M("a", weight=10), M("b"), M("s", shadow=True, weight=25)])
    snap = dashboard.Snapshot(1.0, diag.snapshot(table, None, 0.0, []))
    page = parse(dashboard.render(snap))
    heads = [th.text for th in page.one("table", class_="mappings").find_all("th")]
    assert heads == [
        "Name",
        "Namespace",
        "Prefix",
        "Service",
        "Resolved address",
        "Role",
        "Weight",
        "Canary share",
        "Group",
    ]
    cells = {
        tr.attrs["data-mapping"]: [td.text for td in tr.find_all("td")]
        for tr in page.find_all("tr")
        if "data-mapping" in tr.attrs
    }
    assert cells["a.default"] == ["a", "default", "/api/", "a-svc", "http://a-svc:80", "production", "10", "10 %", "#0"]
    assert cells["b.default"][5:8] == ["production", "–", "90 %"]
    assert cells["s.default"][5:8] == ["shadow", "25", "–"]


def test_everything_from_user_files_is_escaped() -> None:
    table = routing.build_table([M(f"n{EVIL}", service="n"), M("s", shadow=True, prefix=f"/p{EVIL}/")])
    m = Metrics()
    m.record_upstream("s", "s-svc", SHADOW, 200, 0.01)
    m.record_drop("s", f"why{EVIL}")
    loaded = mappings.LoadResult()
    loaded.files.append(f"/f{EVIL}.yaml")
    loaded.notices.append(f"notice{EVIL}")
    d = diag.snapshot(table, loaded, 1.0, [f"reload{EVIL}"])
    (row,) = report.comparison(table, m)
    # Service names cannot hold these characters once parsed; the page must not rely on that.
    d = dataclasses.replace(
        d,
        mappings=(dataclasses.replace(d.mappings[0], service=f"svc{EVIL}"), *d.mappings[1:]),
        errors=(*d.errors, diag.ErrorRow(f"m{EVIL}", f"e{EVIL}")),
    )
    snap = dashboard.Snapshot(
        generated_at=1.0,
        diag=d,
        comparison=(dataclasses.replace(row, shadow_service=f"shadowsvc{EVIL}"),),
        compare={"s": {f"k{EVIL}": 1}},
        diffs=evil_diffs(),
    )
    text = dashboard.render(snap)
    assert "<script" not in text and "alert(1)</script>" not in text
    page = parse(text)
    assert not page.find_all("script")
    # The reader sees the original text back, in every place it was shown.
    whole = page.text
    for shown in (
        f"n{EVIL}",
        f"/p{EVIL}/",
        f"svc{EVIL}",
        f"shadowsvc{EVIL}",
        f"why{EVIL}",
        f"/f{EVIL}.yaml",
        f"notice{EVIL}",
        f"reload{EVIL}",
        f"e{EVIL}",
        f"k{EVIL}",
        f"GET /e{EVIL}",
        f"GET /p{EVIL}",
    ):
        assert shown in whole, shown
    assert page.one("span", data_reason=f"why{EVIL}")  # attribute values survive quoting intact
    assert page.one("tr", data_mapping=f"n{EVIL}.default")


def test_attribute_injection_is_inert() -> None:
    name = 'x" onmouseover="alert(1)'
    table = routing.build_table([M(name, service="x"), M("s", shadow=True)])
    snap = dashboard.Snapshot(1.0, diag.snapshot(table, None, 0.0, []))
    page = parse(dashboard.render(snap))
    assert not [n for n in page.iter() if any(k.startswith("on") for k in n.attrs)]
    assert page.one("tr", data_mapping=f"{name}.default")


@pytest.mark.parametrize(
    "snap", [dashboard.Snapshot(), dashboard.Snapshot(5.0, diag.snapshot(routing.Table(), None, 0.0, []))]
)
def test_empty_state(snap: dashboard.Snapshot) -> None:
    page = parse(dashboard.render(snap))
    assert not page.find_all("article")
    assert "No Mapping has a shadow" in page.one("section", id="comparison").text
    assert "No Mappings loaded" in page.one("section", id="mappings").text
    assert page.one("dd", id="loaded-at").text == "–" and page.one("dd", id="files").text == "none"
    assert not page.find_all(id="errors") and not page.find_all(id="notices") and not page.find_all(id="diffs")
    assert page.one("div", data_metric="config-errors").attrs["class"] == "tile"


def test_a_shadow_weight_over_100_shows_as_every_request() -> None:
    table = routing.build_table([M("api"), M("api-shadow", shadow=True, weight=150)])
    snap = dashboard.Snapshot(1.0, diag.snapshot(table, None, 0.0, []), tuple(report.comparison(table, Metrics())))
    page = parse(dashboard.render(snap))
    assert "gets a copy of 100 % of requests" in resource(page).text


def test_a_shadow_without_traffic_shows_dashes_and_an_empty_histogram() -> None:
    table = routing.build_table([M("api"), M("api-shadow", shadow=True, weight=10)])
    snap = dashboard.Snapshot(1.0, diag.snapshot(table, None, 0.0, []), tuple(report.comparison(table, Metrics())))
    page = parse(dashboard.render(snap))
    assert [cell(page, "shadow", k).text for k in ("requests", "error_rate", "p50", "p99")] == ["0", "0 %", "–", "–"]
    assert cell(page, "shadow", "p50").attrs["data-value"] == ""
    svg = page.one("svg", class_="hist")
    assert "no latency observed yet" in svg.text
    assert all(float(r.attrs["height"]) == 0 for r in svg.find_all("rect", data_bucket="0"))
    assert "gets a copy of 10 % of requests" in resource(page).text
    assert resource(page).one("div", class_="drops").text == "Dropped copies none"


def test_page_works_under_its_content_security_policy_and_refreshes() -> None:
    snap, _ = real_snapshot()
    text = dashboard.render(snap)
    page = parse(text)
    assert page.one("meta", http_equiv="refresh").attrs["content"] == "5"
    for tag in ("script", "img", "iframe", "object", "style"):
        assert not page.find_all(tag), tag
    # default-src 'none'; style-src 'self': one stylesheet from this server, no inline style anywhere.
    assert [(n.attrs["rel"], n.attrs["href"]) for n in page.find_all("link")] == [
        ("stylesheet", "/static/dashboard.css")
    ]
    assert not [n for n in page.iter() if "style" in n.attrs]
    css = dashboard.static_pages()["/static/dashboard.css"]()
    assert css[0].startswith("text/css") and b"--prod:#2f6fdb" in css[1]
    assert "url(" not in text and "@import" not in text and b"url(" not in css[1] and b"@import" not in css[1]
    assert all(a.attrs["href"].startswith("/") for a in page.find_all("a"))  # only this admin server's own pages
    assert page.one("head").one("title").text == "mitmproxy-shadow dashboard"
    assert page.one("h1").text == "mitmproxy-shadow production vs shadow"


def test_render_is_pure() -> None:
    snap, _ = real_snapshot()
    before = copy.deepcopy(snap)
    assert dashboard.render(snap) == dashboard.render(snap)
    assert snap == before


def test_compare_and_diffs_only_when_present() -> None:
    snap, _ = real_snapshot()
    page = parse(dashboard.render(snap))
    assert not page.find_all(data_metric="compare") and not page.find_all(id="diffs")
    assert "Response comparison" not in page.text

    counts = {"api-shadow": {"skipped": 3, "mismatch": 2, "match": 40, "noise": 1}, "elsewhere": {"match": 9}}
    snap = dataclasses.replace(snap, compare=counts)
    store = compare.MismatchStore()
    prod = compare.Reply.of(200, [("content-type", "application/json")], b'{"price": 10}')
    other = compare.Reply.of(200, [("content-type", "application/json")], b'{"price": 12}')
    cfg = compare.CompareConfig()
    for i in range(8):
        shadow = other if i < 2 else prod
        store.add(
            "api-shadow",
            "GET /v1/items/{id}",
            {"method": "GET", "path": f"/v1/items/{i}"},
            prod,
            shadow,
            compare.compare(prod, shadow, cfg),
            now=1.0 + i,
        )
    store.add(
        "api-shadow",
        "POST /v1/orders",
        {"method": "POST", "path": "/v1/orders"},
        prod,
        None,
        compare.skipped("shadow timeout"),
        now=9.0,
    )
    snap = dataclasses.replace(snap, diffs=store.to_json())
    page = parse(dashboard.render(snap))
    chips = [(n.attrs["data-result"], n.attrs["data-value"]) for n in resource(page).find_all(data_metric="compare")]
    assert chips == [("match", "40"), ("mismatch", "2"), ("noise", "1"), ("skipped", "3")]
    assert "bad" in resource(page).one(data_result="mismatch").attrs["class"].split()
    diffs = page.one("section", id="diffs")
    groups = [[td.text for td in tr.find_all("td")] for tr in diffs.find_all("tr", class_="diff-group")]
    assert groups == [
        ["api-shadow", "GET /v1/items/{id}", "8", "2", "0", "0", "25.0 %"],
        ["api-shadow", "POST /v1/orders", "0", "0", "0", "1", "0 %"],
    ]
    latest = [tr for tr in diffs.find_all("tr", class_="diff")]
    assert len(latest) == 2 and "/price: 10 -> 12" in latest[0].text and "GET /v1/items/1" in latest[0].text

    snap = dataclasses.replace(snap, diffs=compare.MismatchStore().to_json())
    assert "Nothing compared yet." in parse(dashboard.render(snap)).one("section", id="diffs").text


def evil_diffs() -> dict[str, object]:
    store = compare.MismatchStore()
    prod = compare.Reply.of(200, [("content-type", "application/json")], json.dumps({f"k{EVIL}": 1}).encode())
    shadow = compare.Reply.of(500, [("content-type", "application/json")], json.dumps({f"k{EVIL}": 2}).encode())
    store.add(
        f"m{EVIL}",
        f"GET /e{EVIL}",
        {"method": "GET", "path": f"/p{EVIL}"},
        prod,
        shadow,
        compare.compare(prod, shadow, compare.CompareConfig()),
        now=1.0,
    )
    return store.to_json()


@pytest.mark.parametrize(
    ("fn", "value", "expected"),
    [
        (figures.fmt_ms, None, "–"),
        (figures.fmt_ms, 0.00726, "7.26 ms"),
        (figures.fmt_ms, 0.0204, "20.4 ms"),
        (figures.fmt_ms, 1.2346, "1,235 ms"),
        (figures.fmt_pct, 0.0, "0 %"),
        (figures.fmt_pct, 0.1, "10.0 %"),
        (figures.fmt_pct, 1.0, "100 %"),
        (figures.fmt_pct, None, "–"),
        (figures.fmt_int, 1234567, "1,234,567"),
        (figures.fmt_int, None, "–"),
        (figures.fmt_time, 0.0, "–"),
        (figures.fmt_time, 86400.5, "1970-01-02 00:00:00 UTC"),
        (figures.fmt_age, 59.9, "59 s ago"),
        (figures.fmt_age, 3725.0, "1 h 2 min ago"),
        (figures.fmt_bound, 0.0025, "2.5 ms"),
        (figures.fmt_bound, 2.5, "2.5 s"),
    ],
)
def test_number_formats(fn: Any, value: Any, expected: str) -> None:
    assert fn(value) == expected


def _poisoned(v: Any, keys: bool) -> Any:
    """Every string in a snapshot with markup and quotes appended; with `keys`, the keys of free-form maps too."""
    if isinstance(v, str):
        return v + EVIL
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return dataclasses.replace(v, **{f.name: _poisoned(getattr(v, f.name), keys) for f in dataclasses.fields(v)})
    if isinstance(v, list | tuple):
        return type(v)(_poisoned(x, keys) for x in v)
    if isinstance(v, dict):
        return {(k + EVIL if keys and k[:1].isdigit() else k): _poisoned(x, keys) for k, x in v.items()}
    return v


@pytest.mark.parametrize("keys", [False, True])
def test_no_string_anywhere_in_the_snapshot_comes_out_as_markup(keys: bool) -> None:
    snap, _ = real_snapshot()
    snap = dataclasses.replace(snap, compare={"api-shadow": {"match": 3, "mismatch": 1}}, diffs=evil_diffs())
    poisoned = _poisoned(snap, keys)
    poisoned.comparison[0].drops[f"reason{EVIL}"] = 1
    poisoned = dataclasses.replace(
        poisoned, compare={poisoned.comparison[0].shadow_mapping: {f"result{EVIL}": 2, "match": 1}}
    )
    text = dashboard.render(poisoned)
    assert "<script" not in text and "\"'&<" not in text
    page = parse(text)  # strict: every element balanced, so no value closed an element or opened one
    assert not page.find_all("script")
    assert not [n for n in page.iter() if any(k.startswith("on") for k in n.attrs)]
    assert page.text.count("<script>alert(1)</script>") > 20  # shown back as text, in many places
    tags = {n.tag for n in page.iter()}
    assert tags <= {
        *("#document", "html", "head", "meta", "title", "link", "body", "header", "h1", "small", "dl", "div", "dt"),
        *("dd", "code", "main", "section", "h2", "span", "ul", "li", "article", "h3", "p", "b", "table", "thead"),
        *("tr", "th", "tbody", "td", "figure", "figcaption", "svg", "g", "line", "text", "rect", "i", "footer", "a"),
    }, tags


def _mismatch(*fields: str) -> compare.Comparison:
    """A mismatch in these JSON fields, as `compare` makes one (a diff line and a Difference each)."""
    return compare.Comparison(
        "mismatch",
        frozenset({"body"}),
        [f"{f}: 1 -> 2" for f in fields],
        differences=tuple(compare.Difference(f, "value") for f in fields),
    )


def test_the_per_field_view_shows_what_differs_how_often_against_noise() -> None:
    from shadow_addon.compare.judge import Judge, JudgeConfig

    snap, _ = real_snapshot()
    judge = Judge(JudgeConfig())
    for i in range(4):
        judge.noise("api-shadow", "GET /v1/items/{id}", ["/ts"])
        judge.candidate("api-shadow", "GET /v1/items/{id}", _mismatch("/ts", *(["/price"] if i else [])))
    judge.candidate("api-shadow", "POST /v1/orders", _mismatch("/id"))
    store = compare.MismatchStore()
    store.judgement = judge.summary
    snap = dataclasses.replace(snap, diffs=store.to_json())
    page = parse(dashboard.render(snap))
    view = page.one("div", id="fields")
    items = view.one("div", class_="endpoint-fields", data_endpoint="GET /v1/items/{id}")
    assert items.attrs["data-provisional"] == "false"
    rows = {tr.attrs["data-field"]: tr for tr in items.find_all("tr", class_="field")}
    assert list(rows) == ["/price", "/ts"]  # reported first
    assert rows["/price"].attrs["data-reported"] == "true" and rows["/ts"].attrs["data-reported"] == "false"
    assert rows["/price"].one("td", data_metric="candidate").text == "3 (75.0 %)"
    assert rows["/ts"].one("td", data_metric="noise").text == "4 (100 %)"
    assert "differs" in rows["/price"].text and "noise" in rows["/ts"].text
    orders = view.one("div", class_="endpoint-fields", data_endpoint="POST /v1/orders")
    assert orders.attrs["data-provisional"] == "true" and "provisional" in orders.text
    assert "shadow_compare_secondary" in orders.one("p", class_="hint").text
    assert "20.0 % of its rate and 0.03 % of the pairs" in view.text


def test_a_note_when_writes_are_shadowed() -> None:
    snap, _ = real_snapshot()
    assert not parse(dashboard.render(snap)).find_all(id="writes")
    snap = dataclasses.replace(snap, writes={"api-shadow": 7})
    note = parse(dashboard.render(snap)).one("section", id="writes")
    assert note.one("li").attrs["data-value"] == "7" and "shadow_methods" in note.text
