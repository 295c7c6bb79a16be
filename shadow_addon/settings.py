"""The addon's options parsed into one `Settings` object (`parse`); the table they come from, declared by
`declare`, is `optiontable` (re-exported here).

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
from .optiontable import COMPARE, DEFAULTS, OPTIONS, RELOAD, SENDER, Option, declare, triggered

if TYPE_CHECKING:
    from .compare import CompareConfig
    from .compare.endpoints import Pattern
    from .compare.judge import JudgeConfig
    from .secondary import Secondary

logger = logging.getLogger("shadow")

__all__ = ["COMPARE", "OPTIONS", "RELOAD", "SENDER", "Option", "Settings", "declare", "parse", "triggered"]

DEFAULT_BODY_LIMIT = human.parse_size(DEFAULTS["shadow_body_limit"]) or 0
DEFAULT_MEMORY_LIMIT = human.parse_size(DEFAULTS["shadow_memory_limit"]) or 0
DEFAULT_RESPONSE_LIMIT = human.parse_size(DEFAULTS["shadow_response_limit"]) or 0
CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")


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
