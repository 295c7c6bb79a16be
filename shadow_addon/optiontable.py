"""The addon's options, one table: name, type, default, help, and what a change triggers beyond new `Settings`
(reading the Mapping files again, a new sender, a new comparison). `declare` gives it to mitmproxy's loader;
`settings.parse` reads the values."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# What a changed option needs beyond a new Settings object.
RELOAD = frozenset({"reload"})  # read the Mapping files again
SENDER = frozenset({"sender"})  # a new sender (connection limits, TLS)
COMPARE = frozenset({"compare"})  # a new comparison


@dataclass(frozen=True, slots=True)
class Option:
    """One option as `loader.add_option` takes it, and what a change of it triggers."""

    name: str
    type: Any
    default: Any
    help: str
    choices: Sequence[str] | None = None
    triggers: frozenset[str] = frozenset()


OPTIONS: tuple[Option, ...] = (
    Option(
        "mappings",
        str,
        "",
        "Emissary Mapping YAML: a file, or a directory of *.yaml/*.yml files. Empty: pass everything through.",
        triggers=RELOAD,
    ),
    Option(
        "mapping_services",
        Sequence[str],
        [],
        "Replace a Mapping service's address: NAME=[scheme://]HOST:PORT. NAME matches with or without its "
        ".namespace and port (e.g. myservice=127.0.0.1:9001). Repeatable.",
        triggers=RELOAD,
    ),
    Option(
        "mapping_ambassador_id",
        str,
        "default",
        "This instance's ambassador_id: Mappings whose ambassador_id does not include it are ignored, as "
        "Emissary ignores them.",
        triggers=RELOAD,
    ),
    Option(
        "mappings_strict",
        bool,
        False,
        "Any invalid Mapping stops loading (for CI). Off: as in Emissary, an invalid Mapping is left out, "
        "reported in the log and /diag, and the others serve.",
        triggers=RELOAD,
    ),
    Option(
        "mapping_keep_host",
        bool,
        True,
        "Keep the client's Host header as Envoy does (turns on keep_host_header when Mappings are loaded), so "
        "upstreams see it and host/hostname Mappings match. Off: Host follows the routed service.",
        triggers=RELOAD,
    ),
    Option(
        "mapping_envoy_headers",
        bool,
        True,
        "Add to routed requests the headers Envoy adds with Emissary's defaults (x-forwarded-for, "
        "x-forwarded-proto, x-request-id, x-envoy-expected-rq-timeout-ms, x-envoy-original-path...); copies carry "
        "production's values and x-envoy-internal: true. Off: upstreams get the client's headers only.",
    ),
    Option(
        "shadow_host_suffix",
        bool,
        True,
        "Insert -shadow before the port in the copy's Host header, as Envoy does (foo:80 -> foo-shadow:80).",
    ),
    Option(
        "shadow_add_headers",
        Sequence[str],
        [],
        "Headers added to every copy, as 'Name: value' (e.g. 'x-shadow: 1'). Repeatable.",
    ),
    Option(
        "shadow_remove_headers",
        Sequence[str],
        [],
        "Headers stripped from every copy. '@credentials' stands for Authorization, Cookie and "
        "Proxy-Authorization. Repeatable.",
    ),
    Option(
        "shadow_sample_key",
        str,
        "",
        "Header whose value decides sampling (same value, same decision). Empty: random per request.",
    ),
    Option(
        "shadow_body_limit",
        str,
        "1m",
        "Largest request body copied (e.g. 512k, 1m); a larger one is not copied and counted as body_limit.",
    ),
    Option(
        "shadow_response_limit",
        str,
        "64k",
        "Largest shadow response body read (e.g. 64k, 1m); past it the copy is counted as response_limit. "
        "When comparison or the flow view keeps bodies, their keep size if larger.",
    ),
    Option(
        "shadow_memory_limit",
        str,
        "256m",
        "Memory for copies' bodies in flight or waiting, kept shadow answers and comparison pairs, across "
        "every shadow service; beyond it copies are dropped and counted as overload.",
    ),
    Option(
        "shadow_max_inflight",
        int,
        64,
        "Copies in flight per shadow service; more wait in the backlog. A capture read with -r sends 4 at a time "
        "unless this is set.",
        triggers=SENDER,
    ),
    Option(
        "shadow_max_backlog",
        int,
        256,
        "Copies that may wait per shadow service; beyond it copies are dropped and counted as overload.",
        triggers=SENDER,
    ),
    Option(
        "shadow_flows",
        str,
        "auto",
        "Show each shadow exchange as its own flow (marked, commented 'shadow of <id>'): auto = in mitmweb and "
        "the console; on = also log one line per copy in mitmdump; off = never.",
        choices=["auto", "on", "off"],
    ),
    Option(
        "shadow_compare",
        bool,
        False,
        "Compare each shadow response with production's (status, headers, body; JSON field by field) and count "
        "match, mismatch, noise or skipped. The client never waits: a record of production's reply is kept.",
        triggers=COMPARE,
    ),
    Option(
        "shadow_compare_headers",
        Sequence[str],
        ["content-type"],
        "Response headers compared (repeatable).",
        triggers=COMPARE,
    ),
    Option(
        "shadow_compare_ignore",
        Sequence[str],
        [],
        "Ignored in comparisons: JSON pointers with * for any one segment (/meta/timestamp, /items/*/id) or "
        "header names. Repeatable.",
        triggers=COMPARE,
    ),
    Option(
        "shadow_compare_body_limit",
        str,
        "1m",
        "Bodies up to this size are compared field by field; larger ones by size and hash only.",
        triggers=COMPARE,
    ),
    Option(
        "shadow_compare_report",
        str,
        "",
        "Append each mismatch as a JSON line to this file (for CI pipelines).",
        triggers=COMPARE,
    ),
    Option(
        "shadow_compare_secondary",
        Sequence[str],
        [],
        "A second instance of production's version, [NAME=][scheme://]HOST:PORT (NAME: a production Mapping's "
        "service, as in mapping_services; none: every service). Compared requests also go there; fields in which "
        "it differs from production are noise for that endpoint. Repeatable.",
        triggers=COMPARE,
    ),
    Option(
        "shadow_compare_relative_threshold",
        str,
        "20.0",
        "Percent. A field is reported only when its difference rate exceeds its noise rate by more than this share "
        "of its difference rate, and by shadow_compare_absolute_threshold (Diffy's relativeThreshold).",
        triggers=COMPARE,
    ),
    Option(
        "shadow_compare_absolute_threshold",
        str,
        "0.03",
        "Percent of the pairs compared by which a field's difference rate must exceed its noise rate for it to be "
        "reported (Diffy's absoluteThreshold).",
        triggers=COMPARE,
    ),
    Option(
        "shadow_compare_endpoints",
        Sequence[str],
        [],
        "Endpoint names for comparison: [METHOD ]/path/{name}, {name} standing for one segment (e.g. "
        "'GET /cart/{user}'). A request header Canonical-Resource names its endpoint itself. Repeatable.",
        triggers=COMPARE,
    ),
    Option(
        "shadow_methods",
        Sequence[str],
        [],
        "Only requests with these methods are copied (e.g. GET, HEAD: keep writes away from a shadow that shares "
        "state with production). Empty: every method, as Emissary. Repeatable.",
    ),
    Option(
        "shadow_grpc_descriptors",
        str,
        "",
        "A FileDescriptorSet (protoc --include_imports --descriptor_set_out, buf build -o): gRPC answers are "
        "compared with field names instead of field numbers.",
        triggers=COMPARE,
    ),
    Option(
        "shadow_compare_report_max",
        str,
        "64m",
        "Size of shadow_compare_report before it is moved to <file>.1 (replacing the one before) and begun anew. "
        "0: unbounded.",
        triggers=COMPARE,
    ),
    Option(
        "shadow_compare_parse_limit",
        str,
        "256k",
        "JSON bodies up to this size are compared field by field; larger ones byte for byte (parsing holds "
        "mitmproxy's event loop about 40 ms per MB).",
        triggers=COMPARE,
    ),
    Option(
        "shadow_compare_budget",
        str,
        "5%",
        "Share of mitmproxy's event loop comparison may take (decoding, parsing, learning noise, comparing), "
        'measured per pair; past it pairs are skipped and counted (shadow_compare_skipped_total{reason="budget"}). '
        "Identical bodies cost nothing.",
        triggers=COMPARE,
    ),
    Option(
        "shadow_admin",
        str,
        "127.0.0.1:8877",
        "Admin server HOST:PORT for /metrics (Prometheus), /diag (JSON) and / (dashboard). Empty: off.",
    ),
    Option(
        "shadow_admin_allow_remote",
        bool,
        False,
        "Allow shadow_admin on a non-loopback address (it has no authentication).",
    ),
    Option(
        "shadow_timeout",
        str,
        "",
        "Seconds a copy may take (e.g. 1.5). Empty: the production Mapping's timeout_ms (Emissary default 3000 "
        "ms), as Envoy gives the mirror the route's timeout.",
    ),
    Option(
        "shadow_replay_speed",
        str,
        "0",
        "Pace of copies from a recorded capture (mitmdump -r): 1 = as recorded, 2 = twice as fast, 0 = as fast as "
        "the shadow's limits allow (shadow_max_inflight; unset, 4 at a time for a capture).",
    ),
    Option(
        "shadow_replay_every_request",
        bool,
        False,
        "Recorded flows (mitmdump -r): copy every request a shadow's route gets, whatever its weight (0 excepted), "
        "so a replay copies the same requests on every run.",
    ),
)

# mitmproxy's own options whose change this addon follows.
MITMPROXY_TRIGGERS: dict[str, frozenset[str]] = {
    "ssl_insecure": SENDER,
    "ssl_verify_upstream_trusted_ca": SENDER,
    "mode": RELOAD,
    "listen_port": RELOAD,
    "listen_host": RELOAD,
}
_TRIGGERS = {o.name: o.triggers for o in OPTIONS} | MITMPROXY_TRIGGERS
DEFAULTS = {o.name: o.default for o in OPTIONS}


def declare(loader: Any) -> None:
    """Every option of the addon, with a help text a user understands without the README."""
    for o in OPTIONS:
        loader.add_option(o.name, o.type, o.default, o.help, choices=o.choices)


def triggered(updated: Iterable[str], trigger: frozenset[str]) -> bool:
    """Whether a change of these options triggers `trigger` (RELOAD, SENDER or COMPARE)."""
    return any(trigger & _TRIGGERS.get(name, frozenset()) for name in updated)
