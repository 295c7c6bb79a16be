"""The addon's options: one table (`OPTIONS`: name, type, default, help, what a change triggers), declared by
`declare` and parsed into one `Settings` object by `parse`.

A leaf: parsing is pure over the option values and imports none of the rooms it configures, so every error is a
one-line `OptionsError` naming the option, and the addon swaps in a whole new `Settings` or keeps the old one. The
comparison's options are parsed beside the comparison (`compare.options`) into the same `Settings`.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mitmproxy import exceptions
from mitmproxy.utils import human

from .addresses import ServiceOverride, is_loopback, parse_host_port, parse_service_override
from .httpsyntax import breaks_line, is_field_name

if TYPE_CHECKING:
    from .compare import CompareConfig
    from .compare.endpoints import Pattern
    from .compare.judge import JudgeConfig
    from .secondary import Secondary

logger = logging.getLogger("shadow")

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
_DEFAULTS = {o.name: o.default for o in OPTIONS}

DEFAULT_BODY_LIMIT = human.parse_size(_DEFAULTS["shadow_body_limit"]) or 0
DEFAULT_MEMORY_LIMIT = human.parse_size(_DEFAULTS["shadow_memory_limit"]) or 0
DEFAULT_RESPONSE_LIMIT = human.parse_size(_DEFAULTS["shadow_response_limit"]) or 0
CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")


def declare(loader: Any) -> None:
    """Every option of the addon, with a help text a user understands without the README."""
    for o in OPTIONS:
        loader.add_option(o.name, o.type, o.default, o.help, choices=o.choices)


def triggered(updated: Iterable[str], trigger: frozenset[str]) -> bool:
    """Whether a change of these options triggers `trigger` (RELOAD, SENDER or COMPARE)."""
    return any(trigger & _TRIGGERS.get(name, frozenset()) for name in updated)


@dataclass(frozen=True, slots=True)
class Settings:
    """The parsed options the hooks and the rooms use."""

    mappings: str = ""
    overrides: tuple[ServiceOverride, ...] = ()
    ambassador_id: str = "default"
    strict: bool = False  # any invalid Mapping stops the load
    keep_host: bool = True  # the client's Host reaches the hooks (keep_host_header, or mapping_keep_host turns it on)
    add_headers: tuple[tuple[bytes, bytes], ...] = ()
    remove_headers: frozenset[bytes] = frozenset()
    sample_key: str = ""
    body_limit: int = DEFAULT_BODY_LIMIT
    response_limit: int = DEFAULT_RESPONSE_LIMIT
    memory_limit: int = DEFAULT_MEMORY_LIMIT
    host_suffix: bool = True
    envoy_headers: bool = True  # the headers Envoy adds (mapping_envoy_headers)
    timeout: float = 0.0  # s; 0: the production Mapping's timeout_ms
    compare: CompareConfig | None = None  # None: comparison off (the fields to `methods`: `compare.options`)
    compare_report: str = ""
    secondaries: tuple[Secondary, ...] = ()
    judge: JudgeConfig | None = None
    endpoints: tuple[Pattern, ...] = ()
    methods: frozenset[str] = frozenset()  # empty: every method
    admin: tuple[str, int] | None = None
    max_inflight: int = 64
    max_backlog: int = 256
    replay_speed: float = 0.0  # recorded flows: 1 = their recorded pace; 0 = as fast as the shadow allows
    replay_every: bool = False  # recorded flows: every request of a shadowed route is copied, whatever the weight


def parse(o: Any) -> Settings:
    """Settings from mitmproxy's options; raises `OptionsError` with one line naming the option."""
    if o.shadow_max_inflight < 1 or o.shadow_max_backlog < 0:
        raise exceptions.OptionsError("shadow_max_inflight must be >= 1 and shadow_max_backlog >= 0")
    return Settings(
        mappings=o.mappings,
        overrides=_overrides(o.mapping_services),
        ambassador_id=o.mapping_ambassador_id,
        strict=o.mappings_strict,
        keep_host=o.keep_host_header or o.mapping_keep_host,
        add_headers=_header_specs("shadow_add_headers", o.shadow_add_headers),
        remove_headers=_remove_specs(o.shadow_remove_headers),
        sample_key=o.shadow_sample_key.strip(),
        body_limit=size("shadow_body_limit", o.shadow_body_limit) or DEFAULT_BODY_LIMIT,
        response_limit=size("shadow_response_limit", o.shadow_response_limit) or DEFAULT_RESPONSE_LIMIT,
        memory_limit=size("shadow_memory_limit", o.shadow_memory_limit) or DEFAULT_MEMORY_LIMIT,
        host_suffix=o.shadow_host_suffix,
        envoy_headers=o.mapping_envoy_headers,
        timeout=nonnegative("shadow_timeout", o.shadow_timeout, "a number of seconds"),
        compare_report=o.shadow_compare_report,
        methods=_methods(o.shadow_methods),
        admin=_admin(o.shadow_admin, o.shadow_admin_allow_remote),
        max_inflight=o.shadow_max_inflight,
        max_backlog=o.shadow_max_backlog,
        replay_speed=nonnegative("shadow_replay_speed", o.shadow_replay_speed, "a number >= 0 (1 = as recorded)"),
        replay_every=o.shadow_replay_every_request,
    )


def _overrides(specs: Sequence[str]) -> tuple[ServiceOverride, ...]:
    out = []
    for spec in specs:
        try:
            name, addr, given = parse_service_override(spec)
        except ValueError as e:
            raise exceptions.OptionsError(f"mapping_services: {e}") from None
        out.append(ServiceOverride(name, addr, given))
    return tuple(out)


def _header_specs(option: str, values: Sequence[str]) -> tuple[tuple[bytes, bytes], ...]:
    out = []
    for spec in values:
        name, sep, value = spec.partition(":")
        name, value = name.strip(), value.strip()
        # Same rules as a Mapping's headers: a token for the name, no line breaks in the value (no injection).
        if not sep or not is_field_name(name) or breaks_line(value):
            raise exceptions.OptionsError(f"{option}: expected 'Name: value', got {spec!r}")
        out.append((name.encode(), value.encode()))
    return tuple(out)


def _remove_specs(values: Sequence[str]) -> frozenset[bytes]:
    names: set[bytes] = set()
    for v in values:
        v = v.strip()
        if v.lower() != "@credentials" and not is_field_name(v):
            raise exceptions.OptionsError(f"shadow_remove_headers: expected a header name, got {v!r}")
        if v.lower() == "@credentials":  # preset: production credentials never reach the test service
            names.update(h.encode() for h in CREDENTIAL_HEADERS)
        else:
            names.add(v.lower().encode())
    return frozenset(names)


def size(option: str, value: str) -> int | None:
    try:
        return human.parse_size(value)
    except ValueError:
        raise exceptions.OptionsError(f"{option}: expected a size such as 512k or 1m, got {value!r}") from None


def percent(option: str, value: str) -> float:
    """A share given as a percentage (`5%`, or `5`) as a fraction."""
    text = value.strip().removesuffix("%").strip()
    try:
        share = float(text) / 100
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1:
        raise exceptions.OptionsError(f"{option}: expected a percentage from 0% to 100% such as 5%, got {value!r}")
    return share


def nonnegative(option: str, value: str, expected: str) -> float:
    """A finite number >= 0 given as text (mitmproxy's `--set` parses no float options); empty is 0."""
    try:
        t = float(value) if value.strip() else 0.0
    except ValueError:
        t = -1.0
    if not t >= 0 or t == float("inf"):
        raise exceptions.OptionsError(f"{option} must be {expected}, got {value!r}")
    return t


def _methods(values: Sequence[str]) -> frozenset[str]:
    methods = set()
    for m in values:
        if not m.strip().isalpha():
            raise exceptions.OptionsError(f"shadow_methods: expected a method such as GET, got {m!r}")
        methods.add(m.strip().upper())
    return frozenset(methods)


def _admin(spec: str, allow_remote: bool) -> tuple[str, int] | None:
    if not spec:
        return None
    try:
        host, port = parse_host_port(spec)
    except ValueError as e:
        raise exceptions.OptionsError(f"shadow_admin: {e}") from None
    if not is_loopback(host) and not allow_remote:
        raise exceptions.OptionsError(
            f"shadow_admin: {host} is not a loopback address; the admin server has no authentication "
            "(set shadow_admin_allow_remote=true to allow it)"
        )
    return host, port


def unknown_options(unknown: Iterable[str], known: Iterable[str]) -> list[str]:
    """One line per option set (`--set`, config.yaml) that no addon declares and that looks like a typo: mitmproxy
    keeps such a value aside without a word, in case a script declares it later, so `shadow_compre=true` would
    otherwise do nothing. Names close to no option and not this addon's (`web_port` in a config.yaml shared with
    mitmweb) are left alone."""
    names = sorted(known)
    out = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
        if not close and not name.startswith(("shadow_", "mapping")):
            continue
        hint = f"; did you mean {close[0]}?" if close else ""
        out.append(f"option {name} is not known to mitmproxy or any addon and does nothing{hint}")
    return out


def fit_mitmproxy(o: Any, updated: set[str]) -> None:
    """Set the mitmproxy options Mappings need (saying so once), or explain a mode they cannot work in."""
    if not o.mappings:
        return
    reverse = any(m.startswith("reverse:") for m in o.mode)
    if not reverse and o.server and {"mode", "mappings"} & updated:  # -n: nothing listens (reading a capture)
        logger.warning(
            "shadow: mitmproxy is not in reverse-proxy mode: a request no Mapping routes and sent to the proxy "
            "as to a server gets 502 'Request destination unknown'; start with --mode reverse:http://HOST:PORT "
            "(where requests no Mapping routes go)"
        )
    if reverse and o.connection_strategy == "eager":
        # Eager mode dials the reverse target before any addon re-routes the request: with it down, every
        # request would fail, routed ones included. Lazily, it is dialled only for requests it serves.
        o.update(connection_strategy="lazy")
        logger.info("shadow: connection_strategy=lazy, so routed requests never wait for the reverse target")
    if o.mapping_keep_host and not o.keep_host_header:
        # mitmproxy's reverse mode replaces Host before any hook; Envoy keeps the client's.
        o.update(keep_host_header=True)
        logger.info("mappings: keep_host_header turned on: upstreams see the client's Host, as with Envoy")
