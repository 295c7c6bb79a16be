"""Emissary's routing rules as pure functions: groups, their order, canary weights, rewrite, shadow Host.

Nothing here does I/O. `build_table` turns validated Mappings into an immutable `Table`; `resolve` picks the
route for one request given the random draws the caller made, so every rule is testable with plain data.

- `groups`: which Mappings form a group, its header/query matches, route weight, canary weights;
- `matching`: the request as routing sees it, path normalisation, compiled matchers;
- `table`: groups built and ordered into a `Table` (with `routeindex` over it);
- `routes`: one request's `Route`, rewrite, redirect, the copy's Host, sampling, header edits.
"""

from __future__ import annotations

from .groups import (
    MISMATCH,
    NORMALIZE_FAILED,
    KeyValue,
    accepts_ambassador_id,
    canary_weights,
    core_mismatches,
    group_key,
    header_matches,
    host_match,
    query_matches,
    route_weight,
)
from .matching import (
    HeaderLookup,
    Matcher,
    RequestView,
    build_matcher,
    first_query_values,
    normalize_path,
    path_test,
)
from .routes import (
    NO_TIMEOUT_CAP,
    Route,
    copy_timeout,
    edit_headers,
    local_reply,
    redirect_location,
    resolve,
    rewrite_path,
    route_to,
    sample_draw,
    shadow_host,
)
from .table import (
    ConfigError,
    Group,
    ServiceOverride,
    Settings,
    Table,
    build_table,
    group_settings,
    order_groups,
    resolve_address,
    route_case_sensitive,
)

__all__ = [
    "MISMATCH",
    "NORMALIZE_FAILED",
    "NO_TIMEOUT_CAP",
    "ConfigError",
    "Group",
    "HeaderLookup",
    "KeyValue",
    "Matcher",
    "RequestView",
    "Route",
    "ServiceOverride",
    "Settings",
    "Table",
    "accepts_ambassador_id",
    "build_matcher",
    "build_table",
    "canary_weights",
    "copy_timeout",
    "core_mismatches",
    "edit_headers",
    "first_query_values",
    "group_key",
    "group_settings",
    "header_matches",
    "host_match",
    "local_reply",
    "normalize_path",
    "order_groups",
    "path_test",
    "query_matches",
    "redirect_location",
    "resolve",
    "resolve_address",
    "rewrite_path",
    "route_case_sensitive",
    "route_to",
    "route_weight",
    "sample_draw",
    "shadow_host",
]
