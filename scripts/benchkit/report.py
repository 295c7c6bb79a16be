"""The report: plain-text tables, the checks, and one way out for every benchmark (JSON file, printed report,
exit status)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

# With -q mitmproxy prints only error log lines ("[HH:MM:SS.mmm] ..."); tracebacks and "Error ..." lines too.
ALARMING = re.compile(r"^(\[\d\d:\d\d:\d\d|Traceback|\w*(Error|Exception)\b)")


@dataclass(slots=True)
class Check:
    name: str
    value: str
    target: str
    result: str  # PASS, FAIL, PASS*, n/a; info (shown, not a target); met / not met (a target of an issue, not counted)
    figure: float = math.nan


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def counts(by_label: dict[str, int]) -> str:
    """'a:1 b:2' (or '-') for counts by label value."""
    return " ".join(f"{k}:{n}" for k, n in by_label.items()) or "-"


def spread(values: Sequence[float]) -> str:
    """' [min..max]' of per-round (or per-phase) ratios, when there is more than one."""
    return f" [{min(values):.2f}..{max(values):.2f}]" if len(values) > 1 else ""


def alarming(lines: Sequence[str]) -> list[str]:
    """The lines of mitmdump's output that are errors or warnings."""
    return [ln for ln in lines if ALARMING.search(ln)]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int] | None = None) -> str:
    right = right if right is not None else set(range(1, len(headers)))
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def _clean(v: Any) -> Any:
    """JSON without NaN (null instead), dataclasses as objects."""
    if is_dataclass(v) and not isinstance(v, type):
        return _clean(asdict(v))
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else round(v, 6)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def publish(result: dict[str, Any], body: Sequence[str], checks: Sequence[Check], notes: Sequence[str]) -> int:
    """Write `result` (with the checks and notes) to its json_path, print the report (`body`, then the checks, the
    notes and where the figures are); the exit status: 1 when a check failed."""
    result["checks"] = [asdict(c) for c in checks]
    result["notes"] = list(notes)
    Path(result["json_path"]).write_text(json.dumps(_clean(result), indent=1) + "\n")
    out = [*body, ""]
    out.append(
        table(["check", "value", "target", "result"], [[c.name, c.value, c.target, c.result] for c in checks], {2})
    )
    passed = sum(c.result in ("PASS", "PASS*") for c in checks)
    failed = sum(c.result == "FAIL" for c in checks)
    out.append(f"\n{passed} passed, {failed} failed")
    if notes:
        out.append("\nnotes:")
        out.extend(f"  - {x}" for x in notes)
    out.append(f"\nfigures: {result['json_path']}  (took {result['meta']['elapsed_s']:.0f} s)")
    print("\n".join(out), flush=True)
    return 1 if failed else 0
