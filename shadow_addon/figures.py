"""A shadowed resource as the dashboard draws it: numbers and times as the page writes them, production's and the
shadow's figures side by side, status-code bars, the latency histogram's geometry and the comparison's results.
Pure: a report row in, plain data for `templates/parts.html` out."""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from typing import Any

from .grpcwire import code_name
from .reasons import WORDS
from .report import Row, Side

ROLES = ("production", "shadow")
ROLE_TITLE = {"production": "Production", "shadow": "Shadow"}
COMPARE_ORDER = ("match", "mismatch", "noise", "skipped")


def data_value(v: object) -> str:
    """A data attribute value: floats in full precision (repr), None as empty."""
    if v is None:
        return ""
    return repr(v) if isinstance(v, float) else str(v)


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


def number(v: object) -> float:
    """A number from the comparison's JSON (`/diffs`, counts), 0 for anything else."""
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


SIDE_LINES = (
    ("requests", "Requests", fmt_int, False),
    ("errors", "Errors (5xx, failed)", fmt_int, False),
    ("error_rate", "Error rate", fmt_pct, True),
    ("p50", "Latency p50", fmt_ms, True),
    ("p90", "Latency p90", fmt_ms, True),
    ("p99", "Latency p99", fmt_ms, True),
)


def _side_table(prod: Side, shadow: Side) -> list[dict[str, Any]]:
    lines = []
    for metric, label, fmt, compare in SIDE_LINES:
        pv, sv = getattr(prod, metric), getattr(shadow, metric)
        # Mark the shadow's figure when it is worse than production's: where a reader should look.
        worse = compare and isinstance(pv, int | float) and isinstance(sv, int | float) and sv > pv * 1.1 and sv > 0
        lines.append({"metric": metric, "label": label, "prod": pv, "shadow": sv, "fmt": fmt, "worse": worse})
    return lines


def _codes(role: str, codes: Mapping[str, int]) -> dict[str, Any]:
    total = sum(codes.values())
    items, x = [], 0.0
    for code, n in codes.items():
        share = n / total if total else 0.0
        items.append(
            {
                "code": code,
                "n": n,
                "cls": _code_class(code),
                "share": fmt_pct(share),
                "x": f"{x * 100:.3f}",
                "width": f"{share * 100:.3f}",
            }
        )
        x += share
    return {"role": role, "title": ROLE_TITLE[role], "items": items}


def _grpc_codes(prod: Side, shadow: Side) -> list[dict[str, Any]]:
    """gRPC calls by grpc-status per role, as status-code bars (OK as a 2xx, any other status as a 5xx: a failed
    call is HTTP 200), when either side answered gRPC."""
    if not (prod.grpc or shadow.grpc):
        return []
    out = []
    for role, side in (("production", prod), ("shadow", shadow)):
        c = _codes(role, side.grpc)
        c["title"] += " gRPC"
        for i in c["items"]:
            i["cls"] = "c2" if i["code"] == "0" else "c5"
            i["code"] = code_name(i["code"])
        out.append(c)
    return out


def _nice_top(x: float) -> float:
    """The smallest 'round' axis maximum >= x (x a fraction of requests, 0..1)."""
    for top in (0.04, 0.08, 0.12, 0.2, 0.4, 0.6, 0.8, 1.0):  # quarters of each are round percentages
        if x <= top + 1e-12:
            return top
    return 1.0


def histogram(prod: Side, shadow: Side) -> dict[str, Any]:
    """Both roles' latency distributions as grouped bars over the same buckets (share of each role's requests,
    so a sampled shadow compares with production; raw counts are in the titles and data-count), as the
    coordinates the template draws."""
    le = list(prod.le or shadow.le)
    n_buckets = len(le) + 1
    series: dict[str, list[int]] = {}
    for role, side in (("production", prod), ("shadow", shadow)):
        counts = list(side.counts[:n_buckets])
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
    grid = []
    for i in range(5):
        frac = i / 4
        y = top_pad + ph - frac * ph
        grid.append({"y": f"{y:.1f}", "ty": f"{y + 4:.1f}", "label": f"{top * frac * 100:g} %"})
    roles = []
    for role, dx in (("production", slot / 2 - bar - 1), ("shadow", slot / 2 + 1)):
        bars = []
        for i, (count, share) in enumerate(zip(series[role], shares[role], strict=True)):
            bh = share / top * ph if top else 0.0
            bars.append(
                {
                    "x": f"{left + i * slot + dx:.1f}",
                    "y": f"{top_pad + ph - bh:.1f}",
                    "height": f"{bh:.1f}",
                    "count": count,
                    "tip": f"{ROLE_TITLE[role]} {labels[i]}: {count:,} ({fmt_pct(share)})",
                }
            )
        roles.append({"role": role, "total": totals[role], "bars": bars})
    lx = w - right - 270
    return {
        "w": w,
        "h": h,
        "left": left,
        "right": w - right,
        "base": top_pad + ph,
        "grid": grid,
        "bar": f"{bar:.1f}",
        "series": roles,
        "labels": [{"x": f"{left + i * slot + slot / 2:.1f}", "text": t} for i, t in enumerate(labels)],
        "label_y": top_pad + ph + 15,
        "mid_x": f"{left + pw / 2:.1f}",
        "mid_y": f"{top_pad + ph / 2:.1f}",
        "title_y": h - 6,
        "legend": [
            {"role": r, "x": lx + j * 140, "text": f"{ROLE_TITLE[r]} (n={totals[r]:,})"} for j, r in enumerate(ROLES)
        ],
        "empty": not any(totals.values()),
    }


def compare_chips(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    keys = [k for k in COMPARE_ORDER if k in results] + sorted(k for k in results if k not in COMPARE_ORDER)
    return [
        {
            "result": k,
            "value": results[k],
            "shown": fmt_int(results[k]) if isinstance(results[k], int) else str(results[k]),
            "bad": k == "mismatch" and number(results[k]) > 0,
        }
        for k in keys
    ]


def resource(row: Row, compare: Mapping[str, Mapping[str, int]] | None) -> dict[str, Any]:
    """One shadowed resource's article: both roles' figures, bars, histogram, drops and comparison results."""
    prod, shadow = row.production, row.shadow
    # Envoy's runtime fraction caps at 100 (protobuf/utility.cc evaluateFractionalPercent): 150 copies every request.
    share = f"{min(row.weight, 100)} % of requests" if row.copies else "nothing: its group has no production route"
    results = compare.get(row.shadow_mapping) if compare is not None else None
    return {
        "resource": row.resource,
        "production_mappings": list(row.production_mappings),
        "shadow_mapping": row.shadow_mapping,
        "shadow_service": row.shadow_service,
        "shadow_address": row.shadow_address,
        "share": share,
        "side": _side_table(prod, shadow),
        "histogram": histogram(prod, shadow),
        "codes": [_codes("production", prod.codes), _codes("shadow", shadow.codes), *_grpc_codes(prod, shadow)],
        "drops": [{"reason": reason, "value": n, "why": WORDS.get(reason, "")} for reason, n in row.drops.items()],
        "compare": compare_chips(results) if results else None,
    }
