"""The /metrics exposition, read back with Prometheus' own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from shadow_addon.metrics import BUCKETS, PRODUCTION, REVERSE_TARGET, SHADOW, Metrics, render

# README "Metrics": every family and its labels, so dashboards built on them keep working.
FAMILIES = {
    "shadow_upstream_requests": ("counter", {"mapping", "service", "role", "code"}),
    "shadow_upstream_request_duration_seconds": ("histogram", {"mapping", "service", "role"}),
    "shadow_dropped": ("counter", {"mapping", "reason"}),
    "shadow_compare": ("counter", {"mapping", "result"}),
    "shadow_compare_mismatch": ("counter", {"mapping", "kind"}),
    "shadow_compare_skipped": ("counter", {"mapping", "reason"}),
    "shadow_config_reloads": ("counter", {"result"}),
    "shadow_config_errors": ("gauge", set()),
    "shadow_inflight": ("gauge", {"service"}),
    "shadow_backlog": ("gauge", {"service"}),
    "shadow_compare_pending": ("gauge", set()),
}


def sample_metrics() -> Metrics:
    m = Metrics()
    m.record_upstream("api", "api-svc", PRODUCTION, 200, 0.003)
    m.record_upstream("api", "api-svc", PRODUCTION, 200, 0.3)
    m.record_upstream("api", REVERSE_TARGET, PRODUCTION, "error", None)
    m.record_upstream('we"ird\\name\n', "s", SHADOW, 503, 20.0)
    m.record_drop("api-shadow", "overload")
    m.record_compare("api-shadow", "mismatch", ["status", "body"])
    m.record_reload(True)
    m.config_errors = 2
    return m


GAUGES = [
    ("shadow_inflight", "Copies in flight per shadow service.", {"service": "http://127.0.0.1:1"}, 3.0),
    ("shadow_inflight", "Copies in flight per shadow service.", {"service": "http://127.0.0.1:2"}, 0.0),
    ("shadow_backlog", "Copies waiting per shadow service.", {"service": "http://127.0.0.1:1"}, 7.0),
    ("shadow_compare_pending", "Production replies held until their shadow answers.", {}, 4.0),
]


def parsed(text: bytes) -> dict[str, tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]]:
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples}
        out[fam.name] = (fam.type, samples)
    return out


def test_every_family_has_its_documented_type_and_labels() -> None:
    fams = parsed(render(sample_metrics(), GAUGES))
    assert set(fams) == set(FAMILIES)
    for name, (kind, labels) in FAMILIES.items():
        got_kind, samples = fams[name]
        assert got_kind == kind, name
        for _, sample_labels in samples:
            assert {k for k, _ in sample_labels} - {"le"} == labels, (name, sample_labels)


def test_values_are_the_counters() -> None:
    fams = parsed(render(sample_metrics(), GAUGES))
    up = fams["shadow_upstream_requests"][1]
    key = (("code", "200"), ("mapping", "api"), ("role", "production"), ("service", "api-svc"))
    assert up[("shadow_upstream_requests_total", key)] == 2
    weird = (("code", "503"), ("mapping", 'we"ird\\name\n'), ("role", "shadow"), ("service", "s"))
    assert up[("shadow_upstream_requests_total", weird)] == 1  # label values escaped and read back intact
    hist = fams["shadow_upstream_request_duration_seconds"][1]
    base = (("mapping", "api"), ("role", "production"), ("service", "api-svc"))
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (n, labels), v in hist.items()
        if n.endswith("_bucket") and dict(labels)["mapping"] == "api"
    )
    assert [le for le, _ in buckets] == [*BUCKETS, float("inf")]
    assert [v for le, v in buckets if le in (0.0025, 0.005, 0.25, 0.5, float("inf"))] == [0, 1, 1, 2, 2]
    assert hist[("shadow_upstream_request_duration_seconds_count", base)] == 2
    assert abs(hist[("shadow_upstream_request_duration_seconds_sum", base)] - 0.303) < 1e-9
    assert fams["shadow_dropped"][1] == {
        ("shadow_dropped_total", (("mapping", "api-shadow"), ("reason", "overload"))): 1
    }
    mism = fams["shadow_compare_mismatch"][1]
    assert {dict(k)["kind"]: v for (_, k), v in mism.items()} == {"status": 1, "body": 1}
    reloads = {dict(k)["result"]: v for (_, k), v in fams["shadow_config_reloads"][1].items()}
    assert reloads == {"success": 1, "failure": 0}
    assert fams["shadow_config_errors"][1] == {("shadow_config_errors", ()): 2}
    inflight = {dict(k)["service"]: v for (_, k), v in fams["shadow_inflight"][1].items()}
    assert inflight == {"http://127.0.0.1:1": 3, "http://127.0.0.1:2": 0}
    assert fams["shadow_compare_pending"][1] == {("shadow_compare_pending", ()): 4}


def test_comparison_families_only_when_comparing() -> None:
    fams = parsed(render(Metrics()))
    assert "shadow_compare" not in fams and "shadow_compare_mismatch" not in fams
    assert set(fams) == {
        "shadow_upstream_requests",
        "shadow_upstream_request_duration_seconds",
        "shadow_dropped",
        "shadow_config_reloads",
        "shadow_config_errors",
    }
