"""The comparison's options (`shadow_compare*`, `shadow_grpc_descriptors`), parsed beside the comparison into the
`Settings` fields it uses; `settings` declares them in its table and parses the others."""

from __future__ import annotations

from typing import Any

from mitmproxy import exceptions

from .. import secondary
from ..settings import nonnegative, percent, size
from . import BODY_LIMIT, PARSE_LIMIT, CompareConfig
from .endpoints import parse_patterns
from .judge import JudgeConfig


def parse(o: Any) -> dict[str, Any]:
    """The `Settings` fields of comparison: compare, secondaries, judge and endpoints (to `dataclasses.replace`);
    raises `OptionsError` with one line naming the option."""
    return {"compare": _compare(o) if o.shadow_compare else None, **_judgement(o)}


def _compare(o: Any) -> CompareConfig:
    limit = size("shadow_compare_body_limit", o.shadow_compare_body_limit)
    parse_limit = size("shadow_compare_parse_limit", o.shadow_compare_parse_limit)
    share = percent("shadow_compare_budget", o.shadow_compare_budget)
    report_max = size("shadow_compare_report_max", o.shadow_compare_report_max)
    try:
        return CompareConfig(
            headers=tuple(h.strip().lower() for h in o.shadow_compare_headers),
            ignore=tuple(o.shadow_compare_ignore),
            body_limit=limit or BODY_LIMIT,
            descriptors=o.shadow_grpc_descriptors,
            parse_limit=PARSE_LIMIT if parse_limit is None else parse_limit,
            loop_share=share,
            report_max=report_max or 0,
        )
    except ValueError as e:
        raise exceptions.OptionsError(f"shadow_compare: {e}") from None


def _judgement(o: Any) -> dict[str, Any]:
    """The secondary, the thresholds and the endpoint patterns."""
    try:
        secondaries = secondary.parse(o.shadow_compare_secondary)
    except ValueError as e:
        raise exceptions.OptionsError(f"shadow_compare_secondary: {e}") from None
    try:
        patterns = parse_patterns(o.shadow_compare_endpoints)
    except ValueError as e:
        raise exceptions.OptionsError(f"shadow_compare_endpoints: {e}") from None
    relative = nonnegative("shadow_compare_relative_threshold", o.shadow_compare_relative_threshold, "a percentage")
    absolute = nonnegative("shadow_compare_absolute_threshold", o.shadow_compare_absolute_threshold, "a percentage")
    return {
        "secondaries": secondaries,
        "judge": JudgeConfig(relative, absolute, secondary=bool(secondaries)),
        "endpoints": patterns,
    }
