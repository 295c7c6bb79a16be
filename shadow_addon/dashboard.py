"""The dashboard page as a pure function of a snapshot (see `Shadow.snapshot`).

One self-contained HTML document: inline CSS and inline SVG, no scripts, no external assets, so it works
offline and behind any proxy. Every value from the snapshot is escaped: Mapping names, prefixes and
services come from user files. Figures carry `data-role` / `data-metric` / `data-value` attributes so a
test (or a scraper) can read them without parsing the formatted text.
"""

from __future__ import annotations

import datetime
import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

REFRESH_SECONDS = 5
ROLES = ("production", "shadow")
ROLE_TITLE = {"production": "Production", "shadow": "Shadow"}
# Drop reasons the sender and the addon record, in words; an unknown reason is shown as is.
DROP_REASONS = {
    "overload": "in-flight limit, backlog or memory limit full",
    "timeout": "no complete answer in time",
    "reset": "connection reset",
    "connect_error": "connection refused or failed",
    "dns_error": "name did not resolve",
    "tls_error": "TLS handshake failed",
    "interim_limit": "too many interim (1xx) responses",
    "head_limit": "response head too large",
    "response_limit": "response body over shadow_response_limit",
    "cancelled": "sender closed or rebuilt",
    "body_limit": "body over shadow_body_limit",
    "streamed": "streamed body not kept",
    "upgrade": "CONNECT or upgrade, never mirrored",
    "loop": "already a copy",
    "client_error": "client left before the request was complete",
}
COMPARE_ORDER = ("match", "mismatch", "noise", "skipped")
TEXT_LIMIT = 300  # characters of a free-form value shown in the differences table

DIFF_ROWS = 30  # endpoints listed
DIFF_RECORDS = 12  # latest mismatches listed

CSS = """
:root{--bg:#f4f5f7;--card:#fff;--ink:#1d2430;--muted:#667085;--line:#e3e6eb;--prod:#2f6fdb;--shadow:#e0822a;
--err:#c0362c;--err-bg:#fdecea;--ok:#2e8b57;--warn:#b7791f;--info-bg:#eef4fd}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"DejaVu Sans",sans-serif}
header.top{background:#1d2430;color:#fff;padding:14px 28px;display:flex;flex-wrap:wrap;align-items:baseline;
gap:6px 28px}
header.top h1{font-size:20px;margin:0;font-weight:650;letter-spacing:.2px}
header.top h1 small{font-weight:400;color:#aab3c2;font-size:14px;margin-left:8px}
header.top dl{display:flex;flex-wrap:wrap;gap:4px 22px;margin:0;color:#cdd4df;font-size:13px}
header.top dt{display:inline;color:#8b95a7}header.top dd{display:inline;margin:0 0 0 6px}
header.top code{color:#fff}
main{padding:18px 28px 28px;max-width:1500px}
h2{font-size:16px;margin:26px 0 10px;font-weight:650}
h2 .count{color:var(--muted);font-weight:400}
.tiles{display:flex;flex-wrap:wrap;gap:12px}
.tile{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 16px;min-width:150px}
.tile .v{font-size:22px;font-weight:650;font-variant-numeric:tabular-nums}
.tile .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.4px}
.tile.bad{border-color:#f0b4ae;background:var(--err-bg)}.tile.bad .v{color:var(--err)}
.box{border-radius:8px;padding:10px 16px;margin:12px 0}
.box.errors{background:var(--err-bg);border:1px solid #f0b4ae}
.box.errors h2{color:var(--err);margin:4px 0 6px}
.box.notices{background:var(--info-bg);border:1px solid #c9dbf5}
.box.notices h2{margin:4px 0 6px}
.box ul{margin:0;padding-left:20px}.box li{margin:2px 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 20px;margin:0 0 16px}
.card h3{margin:0;font-size:17px}
.card h3 code{font-size:16px}
.route{color:var(--muted);margin:2px 0 12px}
.route b{color:var(--ink);font-weight:600}
.grid{display:grid;grid-template-columns:minmax(320px,400px) minmax(0,1fr);gap:28px;align-items:start}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.3px}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.side td.num{font-size:15px}
table.side th.production,.key.production{color:var(--prod)}
table.side th.shadow,.key.shadow{color:var(--shadow)}
td.worse{color:var(--err);font-weight:600}
.sub{color:var(--muted);font-size:12px}
.mix{display:grid;grid-template-columns:1fr 1fr;gap:28px;margin-top:10px}
.codes .label{font-size:12px;font-weight:600;margin-bottom:3px}
.bar{display:flex;height:12px;border-radius:3px;overflow:hidden;background:#edf0f3}
.bar span{display:block;height:100%}
.legend{display:flex;flex-wrap:wrap;gap:2px 12px;font-size:12px;color:var(--muted);margin-top:3px}
.legend i{display:inline-block;width:9px;height:9px;border-radius:2px;margin-right:4px;vertical-align:-1px}
.c2{background:#3c9a5f}.c3{background:#5b8def}.c4{background:#e5a93b}.c5{background:#d64d42}.cerr{background:#7a1f1a}
.cother{background:#98a2b3}
figure{margin:0}
figcaption{font-size:12px;font-weight:600;margin-bottom:2px}
svg.hist{width:100%;max-width:860px;height:auto;display:block}
svg text{font:11px system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;fill:#667085}
svg .grid line{stroke:#e8eaee}svg .axis{stroke:#98a2b3}
svg rect.production{fill:var(--prod)}svg rect.shadow{fill:var(--shadow)}
.drops,.compare{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin-top:12px}
.drops .label,.compare .label{font-size:12px;font-weight:600;margin-right:4px}
.chip{border:1px solid var(--line);border-radius:12px;padding:1px 10px;font-size:12px;background:#fafbfc}
.chip b{font-variant-numeric:tabular-nums}
.chip.bad{border-color:#f0b4ae;background:var(--err-bg);color:var(--err)}
.none{color:var(--muted);font-size:12px}
table.mappings{background:var(--card);border:1px solid var(--line);border-radius:8px;overflow:hidden}
table.mappings td code,table.mappings td.nowrap{white-space:nowrap}
table.mappings tr.group-start td{border-top:2px solid #d5d9e0}
table.mappings tr.row-error td{background:var(--err-bg)}
table.mappings tr.row-error td:first-child{box-shadow:inset 4px 0 0 var(--err)}
.err-msg{color:var(--err);font-size:12px;display:block}
.badge{display:inline-block;border-radius:4px;padding:0 6px;font-size:12px;font-weight:600}
.badge.shadow{background:#fdf0e3;color:#a4561a}.badge.ignored{background:var(--err-bg);color:var(--err)}
.badge.prod{background:#e8effc;color:#2556b0}
table.diffs{background:var(--card);border:1px solid var(--line)}
table.diffs td{font-size:13px}
table.diffs table td,table.diffs table th{padding:2px 6px;font-size:12px}
code{font-family:"DejaVu Sans Mono",ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}
.empty{background:var(--card);border:1px dashed #cfd4dc;border-radius:8px;padding:18px;color:var(--muted)}
footer{color:var(--muted);font-size:12px;padding:0 28px 24px}
"""


def _e(v: object) -> str:
    return html.escape(str(v), quote=True)


def _attr(v: object) -> str:
    """A data attribute value: floats in full precision (repr), None as empty."""
    if v is None:
        return ""
    return _e(repr(v) if isinstance(v, float) else v)


def fmt_int(n: object) -> str:
    return f"{n:,}" if isinstance(n, int) and not isinstance(n, bool) else "–"


def fmt_pct(fraction: object) -> str:
    if not isinstance(fraction, int | float) or isinstance(fraction, bool) or math.isnan(fraction):
        return "–"
    p = fraction * 100.0
    return f"{p:.0f} %" if p == 0 or p == 100 else f"{p:.1f} %"


def fmt_ms(seconds: object) -> str:
    """Seconds as milliseconds, with precision that suits the size; None (no observation) as a dash."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or math.isnan(seconds):
        return "–"
    ms = seconds * 1000.0
    if ms < 10:
        return f"{ms:.2f} ms"
    if ms < 100:
        return f"{ms:.1f} ms"
    return f"{ms:,.0f} ms"


def fmt_time(ts: object) -> str:
    """An epoch time as UTC (the page has no script to learn the reader's zone)."""
    if not isinstance(ts, int | float) or isinstance(ts, bool) or ts <= 0:
        return "–"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s ago"
    if s < 3600:
        return f"{s // 60} min ago"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min ago"
    return f"{s // 86400} d ago"


def fmt_bound(le: float) -> str:
    """A bucket's upper bound as a short axis label."""
    if le < 1:
        ms = le * 1000
        return f"{ms:g} ms"
    return f"{le:g} s"


def _code_class(code: str) -> str:
    if code == "error":
        return "cerr"
    if len(code) == 3 and code[0] in "2345" and code.isdigit():
        return f"c{code[0]}"
    return "cother"


def _num(v: object) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


# ---------------------------------------------------------------------------------------------- header


def _header(snapshot: Mapping[str, Any], diag: Mapping[str, Any]) -> str:
    generated = snapshot.get("generated_at")
    loaded_at = diag.get("loaded_at")
    files = list(diag.get("files") or [])
    if files:
        shown = ", ".join(f"<code>{_e(f)}</code>" for f in files[:4])
        more = f" and {len(files) - 4} more" if len(files) > 4 else ""
        files_html = shown + more
    else:
        files_html = "none"
    loaded = fmt_time(loaded_at)
    if isinstance(loaded_at, int | float) and loaded_at > 0 and isinstance(generated, int | float):
        loaded += f" ({fmt_age(generated - loaded_at)})"
    return (
        '<header class="top"><h1>mitmproxy-shadow <small>production vs shadow</small></h1><dl>'
        f'<div><dt>Mapping files</dt><dd id="files">{files_html}</dd></div>'
        f'<div><dt>Loaded</dt><dd id="loaded-at" data-value="{_attr(loaded_at)}">{_e(loaded)}</dd></div>'
        f'<div><dt>Generated</dt><dd id="generated-at" data-value="{_attr(generated)}">{_e(fmt_time(generated))}'
        f"</dd></div><div><dt>Refresh</dt><dd>every {REFRESH_SECONDS} s</dd></div></dl></header>"
    )


def _tiles(diag: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    errors = len(diag.get("errors") or [])
    prod = sum(int(_num((r.get("production") or {}).get("requests"))) for r in rows)
    shadow = sum(int(_num((r.get("shadow") or {}).get("requests"))) for r in rows)
    drops = sum(int(_num(n)) for r in rows for n in (r.get("drops") or {}).values())
    tiles = [
        ("mappings", "Mappings", len(diag.get("mappings") or []), False),
        ("shadowed", "Shadowed resources", len(rows), False),
        ("config-errors", "Configuration errors", errors, errors > 0),
        ("production-requests", "Production requests", prod, False),
        ("shadow-requests", "Shadow requests", shadow, False),
        ("dropped", "Dropped copies", drops, drops > 0),
    ]
    out = ['<section id="summary" class="tiles">']
    for key, label, value, bad in tiles:
        cls = "tile bad" if bad else "tile"
        out.append(
            f'<div class="{cls}" data-metric="{key}" data-value="{value}"><div class="v">{fmt_int(value)}</div>'
            f'<div class="k">{label}</div></div>'
        )
    out.append("</section>")
    return "".join(out)


def _messages(diag: Mapping[str, Any]) -> str:
    out = []
    errors = diag.get("errors") or []
    if errors:
        items = []
        for e in errors:
            mapping = e.get("mapping")
            who = f"<code>{_e(mapping)}</code>: " if mapping else ""
            items.append(
                f'<li class="config-error" data-mapping="{_attr(mapping)}">{who}{_e(e.get("message", ""))}</li>'
            )
        out.append(
            f'<section id="errors" class="box errors"><h2>Configuration errors <span class="count">'
            f"({len(errors)})</span></h2><ul>{''.join(items)}</ul></section>"
        )
    notices = diag.get("notices") or []
    if notices:
        items = "".join(f'<li class="notice">{_e(n)}</li>' for n in notices)
        out.append(
            f'<section id="notices" class="box notices"><h2>Notices <span class="count">({len(notices)})</span>'
            f"</h2><ul>{items}</ul></section>"
        )
    return "".join(out)


# ---------------------------------------------------------------------------------------------- comparison


def _side_table(row: Mapping[str, Any]) -> str:
    prod, shadow = row.get("production") or {}, row.get("shadow") or {}
    lines = [
        ("requests", "Requests", fmt_int, False),
        ("errors", "Errors (5xx, failed)", fmt_int, False),
        ("error_rate", "Error rate", fmt_pct, True),
        ("p50", "Latency p50", fmt_ms, True),
        ("p90", "Latency p90", fmt_ms, True),
        ("p99", "Latency p99", fmt_ms, True),
    ]
    out = [
        '<table class="side"><thead><tr><th></th><th class="num production">Production</th>'
        '<th class="num shadow">Shadow</th></tr></thead><tbody>'
    ]
    for metric, label, fmt, compare in lines:
        pv, sv = prod.get(metric), shadow.get(metric)
        # Mark the shadow's figure when it is worse than production's: where a reader should look.
        worse = compare and isinstance(pv, int | float) and isinstance(sv, int | float) and sv > pv * 1.1 and sv > 0
        scls = "num worse" if worse else "num"
        out.append(
            f'<tr data-metric="{metric}"><th>{label}</th>'
            f'<td class="num" data-role="production" data-metric="{metric}" data-value="{_attr(pv)}">{_e(fmt(pv))}</td>'
            f'<td class="{scls}" data-role="shadow" data-metric="{metric}" data-value="{_attr(sv)}">{_e(fmt(sv))}</td>'
            "</tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def _codes(role: str, side: Mapping[str, Any]) -> str:
    codes = {str(k): int(_num(v)) for k, v in (side.get("codes") or {}).items()}
    total = sum(codes.values())
    spans, legend = [], []
    for code, n in codes.items():
        cls = _code_class(code)
        share = n / total if total else 0.0
        title = f"{code}: {n:,} ({fmt_pct(share)})"
        if n:
            spans.append(f'<span class="{cls}" style="width:{share * 100:.3f}%" title="{_e(title)}"></span>')
        legend.append(
            f'<span class="code" data-role="{role}" data-code="{_e(code)}" data-value="{n}">'
            f'<i class="{cls}"></i>{_e(code)} <b>{n:,}</b> ({fmt_pct(share)})</span>'
        )
    if not legend:
        legend.append('<span class="none">no answers yet</span>')
    return (
        f'<div class="codes" data-role="{role}"><div class="label key {role}">{ROLE_TITLE[role]} status codes</div>'
        f'<div class="bar">{"".join(spans)}</div><div class="legend">{"".join(legend)}</div></div>'
    )


def _nice_top(x: float) -> float:
    """The smallest 'round' axis maximum >= x (x a fraction of requests, 0..1)."""
    for top in (0.04, 0.08, 0.12, 0.2, 0.4, 0.6, 0.8, 1.0):  # quarters of each are round percentages
        if x <= top + 1e-12:
            return top
    return 1.0


def histogram_svg(prod: Mapping[str, Any], shadow: Mapping[str, Any]) -> str:
    """Both roles' latency distributions as grouped bars over the same buckets (share of each role's requests,
    so a sampled shadow compares with production; raw counts are in the titles and data-count)."""
    hist_p, hist_s = prod.get("histogram") or {}, shadow.get("histogram") or {}
    le = [float(b) for b in (hist_p.get("le") or hist_s.get("le") or [])]
    n_buckets = len(le) + 1
    series: dict[str, list[int]] = {}
    for role, h in (("production", hist_p), ("shadow", hist_s)):
        counts = [int(_num(c)) for c in (h.get("counts") or [])][:n_buckets]
        series[role] = counts + [0] * (n_buckets - len(counts))
    totals = {role: sum(c) for role, c in series.items()}
    shares = {role: [c / totals[role] if totals[role] else 0.0 for c in cs] for role, cs in series.items()}
    top = _nice_top(max([0.0, *shares["production"], *shares["shadow"]]))

    w, h = 760, 260
    left, right, top_pad, bottom = 62, 8, 28, 46
    pw, ph = w - left - right, h - top_pad - bottom
    slot = pw / n_buckets
    bar = slot * 0.36
    labels = [f"≤{fmt_bound(b)}" if i == 0 else fmt_bound(b) for i, b in enumerate(le)] + [
        f">{fmt_bound(le[-1])}" if le else "all"
    ]
    out = [
        f'<svg class="hist" viewBox="0 0 {w} {h}" role="img" xmlns="http://www.w3.org/2000/svg" '
        f'aria-label="latency histogram, production and shadow">'
    ]
    out.append('<g class="grid">')
    for i in range(5):
        frac = i / 4
        y = top_pad + ph - frac * ph
        out.append(
            f'<line x1="{left}" x2="{w - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{top * frac * 100:g} %</text>'
        )
    out.append("</g>")
    for role, dx in (("production", slot / 2 - bar - 1), ("shadow", slot / 2 + 1)):
        out.append(f'<g class="series" data-role="{role}" data-total="{totals[role]}">')
        for i, (count, share) in enumerate(zip(series[role], shares[role], strict=True)):
            bh = share / top * ph if top else 0.0
            x = left + i * slot + dx
            bound = labels[i]
            tip = f"{ROLE_TITLE[role]} {bound}: {count:,} ({fmt_pct(share)})"
            out.append(
                f'<rect class="{role}" x="{x:.1f}" y="{top_pad + ph - bh:.1f}" width="{bar:.1f}" '
                f'height="{bh:.1f}" data-role="{role}" data-bucket="{i}" data-count="{count}">'
                f"<title>{_e(tip)}</title></rect>"
            )
        out.append("</g>")
    base = top_pad + ph
    out.append(f'<line class="axis" x1="{left}" x2="{w - right}" y1="{base}" y2="{base}"/>')
    for i, label in enumerate(labels):
        x = left + i * slot + slot / 2
        out.append(f'<text x="{x:.1f}" y="{base + 15}" text-anchor="middle">{_e(label)}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{h - 6}" text-anchor="middle">latency (bucket upper bound)</text>')
    out.append(
        f'<text transform="translate(14 {top_pad + ph / 2:.1f}) rotate(-90)" text-anchor="middle">'
        "% of the role's requests</text>"
    )
    # Legend, top right.
    lx = w - right - 270
    for j, role in enumerate(ROLES):
        x = lx + j * 140
        out.append(
            f'<rect class="{role}" x="{x}" y="6" width="10" height="10" rx="2"/>'
            f'<text x="{x + 14}" y="15">{ROLE_TITLE[role]} (n={totals[role]:,})</text>'
        )
    if not any(totals.values()):
        out.append(
            f'<text class="nodata" x="{left + pw / 2:.1f}" y="{top_pad + ph / 2:.1f}" text-anchor="middle">'
            "no latency observed yet</text>"
        )
    out.append("</svg>")
    return "".join(out)


def _drops(drops: Mapping[str, Any]) -> str:
    chips = []
    for reason, n in sorted(drops.items()):
        why = DROP_REASONS.get(str(reason), "")
        title = f' title="{_e(why)}"' if why else ""
        chips.append(
            f'<span class="chip bad" data-metric="drops" data-reason="{_e(reason)}" data-value="{_attr(n)}"'
            f"{title}>{_e(reason)} <b>{fmt_int(n)}</b></span>"
        )
    body = " ".join(chips) if chips else '<span class="none">none</span>'
    return f'<div class="drops"><span class="label">Dropped copies</span> {body}</div>'


def _compare_block(results: Mapping[str, Any]) -> str:
    keys = [k for k in COMPARE_ORDER if k in results] + sorted(k for k in results if k not in COMPARE_ORDER)
    chips = []
    for k in keys:
        n = results[k]
        bad = k == "mismatch" and _num(n) > 0
        shown = fmt_int(n) if isinstance(n, int) else str(n)
        chips.append(
            f'<span class="chip{" bad" if bad else ""}" data-metric="compare" data-result="{_e(k)}" '
            f'data-value="{_attr(n)}">{_e(k)} <b>{_e(shown)}</b></span>'
        )
    return f'<div class="compare"><span class="label">Response comparison</span> {" ".join(chips)}</div>'


def _resource(i: int, row: Mapping[str, Any], compare: Mapping[str, Any] | None) -> str:
    prod, shadow = row.get("production") or {}, row.get("shadow") or {}
    prod_names = row.get("production_mappings") or []
    prod_html = ", ".join(f"<b>{_e(n)}</b>" for n in prod_names) if prod_names else "<b>the reverse target</b>"
    weight = row.get("weight")
    share = f"{weight} % of requests" if isinstance(weight, int | float) else "requests"
    out = [
        f'<article class="card resource" id="resource-{i}" data-resource="{_attr(row.get("resource"))}" '
        f'data-shadow-mapping="{_attr(row.get("shadow_mapping"))}">',
        f"<h3><code>{_e(row.get('resource', ''))}</code></h3>",
        f'<p class="route">production {prod_html} · shadow <b>{_e(row.get("shadow_mapping", ""))}</b> '
        f"({_e(row.get('shadow_service', ''))} at <code>{_e(row.get('shadow_address', ''))}</code>) "
        f"gets a copy of {_e(share)}</p>",
        '<div class="grid">',
        _side_table(row),
        f'<figure class="histogram" data-resource="{_attr(row.get("resource"))}"><figcaption>Latency distribution'
        f"</figcaption>{histogram_svg(prod, shadow)}</figure></div>",
        f'<div class="mix">{_codes("production", prod)}{_codes("shadow", shadow)}</div>',
        _drops(row.get("drops") or {}),
    ]
    if compare is not None:
        results = compare.get(row.get("shadow_mapping"))
        if isinstance(results, Mapping) and results:
            out.append(_compare_block(results))
    out.append("</article>")
    return "".join(out)


def _comparison(rows: Sequence[Mapping[str, Any]], compare: Mapping[str, Any] | None) -> str:
    out = ['<section id="comparison"><h2>Production vs shadow</h2>']
    if not rows:
        out.append(
            '<div class="empty">No Mapping has a shadow: nothing is copied. Add a Mapping with '
            "<code>shadow: true</code> to copy a resource's traffic.</div>"
        )
    for i, row in enumerate(rows):
        out.append(_resource(i, row, compare))
    out.append("</section>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------- Mappings


def _mappings(diag: Mapping[str, Any]) -> str:
    rows = diag.get("mappings") or []
    groups = {g.get("id"): g for g in diag.get("groups") or []}
    errors: dict[str, list[str]] = {}
    for e in diag.get("errors") or []:
        if e.get("mapping"):
            errors.setdefault(str(e["mapping"]), []).append(str(e.get("message", "")))
    out = [f'<section id="mappings"><h2>Mappings <span class="count">({len(rows)})</span></h2>']
    if not rows:
        out.append(
            '<div class="empty">No Mappings loaded: every request goes to the reverse target unchanged.</div></section>'
        )
        return "".join(out)
    cols = ("Name", "Namespace", "Prefix", "Service", "Resolved address", "Role", "Weight", "Canary share", "Group")
    out.append('<table class="mappings"><thead><tr>')
    out.append(
        "".join(f'<th class="num">{c}</th>' if c in ("Weight", "Canary share") else f"<th>{c}</th>" for c in cols)
    )
    out.append("</tr></thead><tbody>")
    previous_group: object = None
    for m in rows:
        key = f"{m.get('name')}.{m.get('namespace')}"
        errs = errors.get(key, [])
        gid = m.get("group")
        classes = []
        if errs:
            classes.append("row-error")
        if gid != previous_group and previous_group is not None:
            classes.append("group-start")
        previous_group = gid
        if m.get("shadow"):
            role = (
                '<span class="badge shadow">shadow</span>'
                if m.get("active_shadow")
                else '<span class="badge ignored">shadow (ignored)</span>'
            )
        else:
            role = '<span class="badge prod">production</span>'
        name = f"<b>{_e(m.get('name', ''))}</b>"
        name += "".join(f'<span class="err-msg">{_e(msg)}</span>' for msg in errs)
        ignored = m.get("ignored_fields") or []
        if ignored:
            name += f'<span class="sub">ignores: {_e(", ".join(str(f) for f in ignored))}</span>'
        weight, share = m.get("weight"), m.get("canary_share")
        group = groups.get(gid, {})
        cls = f' class="{" ".join(classes)}"' if classes else ""
        out.append(
            f'<tr{cls} data-mapping="{_e(key)}" data-error="{"true" if errs else "false"}">'
            f'<td title="{_attr(m.get("source"))}">{name}</td><td>{_e(m.get("namespace", ""))}</td>'
            f'<td><code>{_e(m.get("prefix", ""))}</code></td><td class="nowrap">{_e(m.get("service", ""))}</td>'
            f"<td><code>{_e(m.get('resolved', ''))}</code></td><td>{role}</td>"
            f'<td class="num" data-metric="weight" data-value="{_attr(weight)}">{"–" if weight is None else _e(weight)}'
            f'</td><td class="num" data-metric="canary_share" data-value="{_attr(share)}">'
            f"{'–' if share is None else _e(f'{share} %')}</td>"
            f'<td title="{_attr(group.get("label"))}">#{_e(gid)}</td></tr>'
        )
    out.append("</tbody></table></section>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------- differences


def _diffs(diffs: Mapping[str, Any]) -> str:
    """Mismatches by endpoint (with rates), then the latest mismatches with their field-by-field diff."""
    out = ['<section id="diffs"><h2>Response differences by endpoint</h2>']
    groups = sorted(
        (g for g in diffs.get("groups", []) if isinstance(g, Mapping)),
        key=lambda g: (-int(g.get("mismatches", 0)), str(g.get("endpoint"))),
    )
    if not groups:
        out.append('<div class="empty">Nothing compared yet.</div></section>')
        return "".join(out)
    out.append(
        '<table class="diffs"><thead><tr><th>shadow</th><th>endpoint</th><th>compared</th><th>mismatches</th>'
        "<th>noise</th><th>skipped</th><th>mismatch rate</th></tr></thead><tbody>"
    )
    for g in groups[:DIFF_ROWS]:
        bad = int(g.get("mismatches", 0)) > 0
        out.append(
            f'<tr class="diff-group{" bad" if bad else ""}" data-mapping="{_e(g.get("mapping"))}" '
            f'data-endpoint="{_e(g.get("endpoint"))}"><td>{_e(g.get("mapping"))}</td><td><code>{_e(g.get("endpoint"))}'
            f'</code></td><td data-metric="compared">{fmt_int(g.get("compared", 0))}</td>'
            f'<td data-metric="mismatches">{fmt_int(g.get("mismatches", 0))}</td>'
            f"<td>{fmt_int(g.get('noise', 0))}</td><td>{fmt_int(g.get('skipped', 0))}</td>"
            f'<td data-metric="rate">{fmt_pct(float(g.get("rate") or 0.0))}</td></tr>'
        )
    out.append("</tbody></table>")
    records = [r for r in diffs.get("records", []) if isinstance(r, Mapping)][:DIFF_RECORDS]
    if records:
        out.append(
            '<h3>Latest mismatches</h3><table class="diffs"><thead><tr><th>when (UTC)</th><th>shadow</th>'
            "<th>request</th><th>status</th><th>what differs</th></tr></thead><tbody>"
        )
        for r in records:
            req = r.get("request") or {}
            prod, shadow = r.get("production") or {}, r.get("shadow") or {}
            lines = "".join(f"<li><code>{_e(str(d)[:TEXT_LIMIT])}</code></li>" for d in (r.get("diffs") or [])[:6])
            out.append(
                f'<tr class="diff"><td>{_e(str(r.get("at", ""))[11:19])}</td><td>{_e(r.get("mapping"))}</td>'
                f"<td><code>{_e(req.get('method', ''))} {_e(str(req.get('path', ''))[:TEXT_LIMIT])}</code></td>"
                f"<td>{_e(prod.get('status', '–'))} → {_e(shadow.get('status', '–'))}</td>"
                f"<td><ul>{lines}</ul></td></tr>"
            )
        out.append("</tbody></table>")
    out.append("</section>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------- page


def render(snapshot: dict[str, Any]) -> str:
    """The whole page. Pure: the same snapshot gives the same bytes."""
    diag = snapshot.get("diag") or {}
    rows = snapshot.get("comparison") or []
    compare = snapshot.get("compare")
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>mitmproxy-shadow dashboard</title><style>{CSS}</style></head><body>",
        _header(snapshot, diag),
        "<main>",
        _tiles(diag, rows),
        _messages(diag),
        _comparison(rows, compare if isinstance(compare, Mapping) else None),
    ]
    if isinstance(snapshot.get("diffs"), Mapping):
        parts.append(_diffs(snapshot["diffs"]))
    parts += [
        _mappings(diag),
        "</main>",
        "<footer>Counts since the proxy started. Histogram bars are shares of each role's requests; hover a bar "
        'for its count. <a href="/metrics">/metrics</a> · <a href="/diag">/diag</a> · <a href="/report">/report</a>'
        "</footer>",
        "</body></html>",
    ]
    return "".join(parts)
