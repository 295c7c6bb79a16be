"""Emissary `Mapping` records: reading every YAML form, validation with one-line errors.

Pure: `parse_text` takes text; `load_path` is the only function that touches the file system.

Hostile input: every problem is reported as one line naming the file (and the document, Mapping and field when
there is one), never raised. Reading is bounded: a file may hold at most MAX_FILE_BYTES, MAX_NODES YAML nodes and
MAX_DEPTH levels of nesting; anchors and aliases are allowed (Kubernetes YAML has them) and never expanded, and
messages show values through `_show`, which stops after a few elements, so an alias "billion laughs" costs no more
than its text. Strings that go on the wire (added headers, rewrites, service hosts) are refused if they hold
characters that would split an HTTP message (CR, LF, NUL, whitespace where the grammar has none).
"""

from __future__ import annotations

import json
import os
import re
import reprlib
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from . import regex

# Fields this addon applies with Emissary's semantics.
HONOURED_FIELDS = frozenset(
    {
        "prefix",
        "prefix_regex",
        "prefix_exact",
        "rewrite",
        "regex_rewrite",
        "service",
        "hostname",
        "host",
        "host_regex",
        "method",
        "headers",
        "regex_headers",
        "query_parameters",
        "regex_query_parameters",
        "precedence",
        "weight",
        "shadow",
        "timeout_ms",
        "add_request_headers",
        "remove_request_headers",
        "add_response_headers",
        "remove_response_headers",
        "host_rewrite",
        "case_sensitive",
        "ambassador_id",
        "ambassadorId",
        "method_regex",
        "tls",
        "host_redirect",
        "path_redirect",
        "prefix_redirect",
        "regex_redirect",
        "redirect_response_code",
        "allow_upgrade",
        "use_websocket",
        "grpc",
    }
)

# Valid Emissary Mapping fields that have no meaning in a local proxy (or are not built yet): accepted,
# listed as "not honoured". Source: pkg/api/getambassador.io/v3alpha1/crd_mapping.go (MappingSpec).
IGNORED_FIELDS = frozenset(
    {
        "generation",
        "idle_timeout_ms",
        "connect_timeout_ms",
        "cluster_idle_timeout_ms",
        "cluster_max_connection_lifetime_ms",
        "cluster_tag",
        "stats_name",
        "auto_host_rewrite",
        "cors",
        "retry_policy",
        "circuit_breakers",
        "load_balancer",
        "keepalive",
        "resolver",
        "labels",
        "bypass_auth",
        "bypass_error_response_overrides",
        "error_response_overrides",
        "dns_type",
        "enable_ipv4",
        "enable_ipv6",
        "add_linkerd_headers",
        "priority",
        "docs",
        "envoy_override",
        "modules",
        "outlier_detection",
        "respect_dns_ttl",
        "rewrite_host",
        "shadow_host",
        "v3StatsName",
        "v3health_checks",
        "health_checks",
        "add_request_headers_append",
        "rate_limits",
        "timeout",
        "circuit_breaker",
        "mappingSelector",
        "v2BoolHeaders",
        "v2BoolQueryParameters",
        "v2ExplicitTLS",
        "allow_websocket",
        "query_parameters_regex",
        "host_redirect_code",
        "namespace",
        "metadata_labels",
        "cluster_name",
        "load_balancer_policy",
    }
)

MAPPING_API_VERSIONS = frozenset(
    {
        "getambassador.io/v3alpha1",
        "getambassador.io/v2",
        "getambassador.io/v1",
        "getambassador.io/v0",
        "x.getambassador.io/v3alpha1",
        "ambassador/v0",
        "ambassador/v1",
        "ambassador/v2",
    }
)
# The annotation style: `name` and the fields at the top level, no metadata/spec.
FLAT_API_VERSIONS = frozenset({"ambassador/v0", "ambassador/v1", "ambassador/v2"})
# Converted to v3alpha1 on the way in (pkg/api/getambassador.io/v2/handwritten.conversion.go); an annotation's
# `ambassador/vN` is read as `getambassador.io/vN` first (pkg/snapshot/v1/annotations.go).
V2_API_VERSIONS = frozenset({"getambassador.io/v2", "getambassador.io/v1", "ambassador/v2", "ambassador/v1"})
LIST_KINDS = frozenset({"List", "MappingList"})
ANNOTATION = "getambassador.io/config"
# The kinds whose annotation Emissary reads (pkg/snapshot/v1/annotations.go PopulateAnnotations).
ANNOTATED_KINDS = frozenset({"Service", "Ingress"})
FLAT_META_KEYS = frozenset({"apiVersion", "kind", "name", "namespace", "metadata"})

# Keys every Mapping of a group must agree on (irhttpmappinggroup.py CoreMappingKeys; prefix, method and headers
# are in the group id here already).
CORE_KEYS = (
    "bypass_auth",
    "circuit_breakers",
    "cluster_timeout_ms",
    "connect_timeout_ms",
    "cluster_idle_timeout_ms",
    "cluster_max_connection_lifetime_ms",
    "keepalive",
    "labels",
    "load_balancer",
    "prefix_regex",
    "prefix_exact",
)
# Emissary-supported fields this proxy does not apply: listed per Mapping in /diag notices, once.
NOT_HONOURED_NOTE = "not honoured (ignored)"
REDIRECT_CODES = (301, 302, 303, 307, 308)  # v3route.py redirect_response_code

DEFAULT_TIMEOUT_MS = 3000  # Emissary: cluster_request_timeout_ms default (v3route.py)
MAX_TIMEOUT_MS = 2**31 - 1  # Envoy durations in ms fit an int32; larger values only overflow later

# Reading limits (see the module docstring). The pure-Python YAML reader costs tens of microseconds per node, and
# a reload runs in the proxy's event loop: these keep a mistaken path (a log, a dump) from stalling traffic.
MAX_FILE_BYTES = 4 * 1024 * 1024  # ~20,000 Mappings of ordinary size
MAX_NODES = 200_000  # per file: ~9,000 Mappings, a few seconds of reading at most
MAX_DEPTH = 64  # a Mapping nests about 6 levels (List > items > Mapping > spec > headers > value)
MAX_INT_BITS = 256  # YAML integers beyond this are refused: no field needs them, and printing huge ones is slow


class MappingError(ValueError):
    """One configuration error, already formatted as the single line a user reads."""


@dataclass(frozen=True, slots=True)
class HeaderAdd:
    name: str
    value: str
    append: bool = True  # Emissary: add_request_headers `append` defaults to True (v3route.py)


@dataclass(frozen=True, slots=True)
class Redirect:
    """host_redirect: answer a redirect to `service` instead of proxying (v3route.py V3Route host_redirect)."""

    host: str
    path: str | None = None  # path_redirect
    prefix: str | None = None  # prefix_redirect
    regex: tuple[str, str] | None = None  # regex_redirect (pattern, substitution)
    code: int = 301


@dataclass(frozen=True, slots=True)
class Mapping:
    name: str
    namespace: str
    source: str  # "file doc N" (plus "item K" inside a List): where it came from, for messages
    prefix: str
    service: str
    prefix_regex: bool = False
    prefix_exact: bool = False
    rewrite: str | None = "/"  # Emissary default: the prefix is replaced by "/"; "" means no rewrite
    regex_rewrite: tuple[str, str] | None = None  # (pattern, substitution)
    hostname: str | None = None  # v3 DNS glob on :authority
    host: str | None = None
    host_regex: bool = False
    method: str | None = None
    headers: tuple[tuple[str, str | None], ...] = ()  # value None: header must be present
    regex_headers: tuple[tuple[str, str], ...] = ()
    query_parameters: tuple[tuple[str, str | None], ...] = ()
    regex_query_parameters: tuple[tuple[str, str], ...] = ()
    precedence: int = 0
    weight: int | None = None
    shadow: bool = False
    timeout_ms: int | None = None
    add_request_headers: tuple[HeaderAdd, ...] = ()
    remove_request_headers: tuple[str, ...] = ()
    add_response_headers: tuple[HeaderAdd, ...] = ()
    remove_response_headers: tuple[str, ...] = ()
    host_rewrite: str | None = None
    case_sensitive: bool = True  # Emissary default (v3route.py)
    ignored_fields: tuple[str, ...] = ()
    method_regex: bool = False
    ambassador_id: tuple[str, ...] = ("default",)  # config.py good_ambassador_id: default "default"
    redirect: Redirect | None = None
    allow_upgrade: tuple[str, ...] = ()  # upgrade types Envoy accepts on this route (lower case)
    core: tuple[tuple[str, str, str], ...] = ()  # CORE_KEYS set here: (key, canonical JSON, Python text)
    explicit: frozenset[str] = frozenset()  # the fields as written, for group-wide flattening
    warnings: tuple[str, ...] = ()  # what Emissary posts but still serves (e.g. a service with a path)
    # HTTP/2 to the service (v3cluster.py V3Cluster: http2_protocol_options when the cluster is grpc); a shadow's
    # own field decides for its copies (irhttpmappinggroup.py add_cluster_for_mapping(shadow, marker='shadow')).
    grpc: bool = False

    @property
    def key(self) -> str:
        """Emissary's resource key, `name.namespace`: the order in which it adds Mappings to groups."""
        return f"{self.name}.{self.namespace}"

    @property
    def effective_timeout_ms(self) -> int:
        return self.timeout_ms if self.timeout_ms is not None else DEFAULT_TIMEOUT_MS


@dataclass(slots=True)
class LoadResult:
    mappings: list[Mapping] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # skipped documents, ignored fields
    errors: list[str] = field(default_factory=list)  # every error (file-level and per-Mapping)
    files: list[str] = field(default_factory=list)
    file_errors: list[str] = field(default_factory=list)  # a file that cannot be read as YAML: nothing loads
    nodes: int = 0  # YAML nodes read from the file being parsed (bounded by MAX_NODES)

    def blocking(self, strict: bool = False) -> list[str]:
        """The errors that stop loading: a file-level error always, any error with `mappings_strict`.

        As in Emissary, an invalid Mapping invalidates itself only (config.py: a resource with errors is skipped).
        """
        return list(self.errors) if strict else list(self.file_errors)


# ---------------------------------------------------------------- field validation


def _where(path: str, doc: int, item: int | None, name: str | None = None) -> str:
    loc = f"{path} doc {doc}" + (f" item {item}" if item is not None else "")
    return f"{loc} (Mapping {name})" if name else loc


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


class _Show(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > MAX_INT_BITS:  # never reached from YAML (refused on reading); kept for direct callers
            return f"<{x.bit_length()}-bit integer>"
        return super().repr_int(x, level)


# Bounded repr for messages: a shared (aliased) structure is never walked past a few elements, strings and
# numbers are cut in the middle, and non-printable characters come out escaped, so the message stays one line.
_SHOW = _Show(
    maxlevel=2,
    maxtuple=4,
    maxlist=4,
    maxarray=4,
    maxdict=4,
    maxset=4,
    maxfrozenset=4,
    maxdeque=4,
    maxstring=80,
    maxlong=80,
    maxother=80,
)


def _show(v: Any) -> str:
    if v is None or isinstance(v, bool):  # as the user wrote them in YAML
        return "null" if v is None else str(v).lower()
    return _SHOW.repr(v)


def _clean(s: str) -> str:
    """Text from a file or a path, safe inside a one-line message: non-printable characters escaped."""
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


# RFC 9110 field-name token; values and paths must not hold what would end or split an HTTP/1 line.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_LINE_BREAKERS = frozenset("\r\n\0")


def is_field_name(name: str) -> bool:
    """An RFC 9110 field-name token: nothing that could end a header line or change its meaning."""
    return bool(_TOKEN_RE.fullmatch(name))


def breaks_line(v: str) -> bool:
    """Whether a header value holds CR, LF or NUL, which would end or split an HTTP/1 line."""
    return any(c in _LINE_BREAKERS for c in v)


def _no_breakers(key: str, v: str) -> str:
    if breaks_line(v):
        raise ValueError(f"{key} must not contain CR, LF or NUL, got {_show(v)}")
    return v


def _no_space(key: str, v: str) -> str:
    """A path or a host: no whitespace or control characters (they would corrupt the request line or Host)."""
    if any(c.isspace() or not c.isprintable() for c in v):
        raise ValueError(f"{key} must not contain whitespace or control characters, got {_show(v)}")
    return v


def _str(spec: dict[str, Any], key: str, *, required: bool = False, empty_ok: bool = True) -> str | None:
    if key not in spec or spec[key] is None:
        if required:
            raise ValueError(f"{key} is required")
        return None
    v = spec[key]
    if not isinstance(v, str):
        raise ValueError(f"{key} must be a string, got {_type_name(v)} {_show(v)}")
    if not empty_ok and not v:
        raise ValueError(f"{key} must not be empty")
    return v


def _bool(spec: dict[str, Any], key: str, default: bool) -> bool:
    if key not in spec or spec[key] is None:
        return default
    v = spec[key]
    if not isinstance(v, bool):
        raise ValueError(f"{key} must be a boolean (true or false), got {_type_name(v)} {_show(v)}")
    return v


def _int(spec: dict[str, Any], key: str, lo: int, hi: int, what: str, too_big: str | None = None) -> int | None:
    if key not in spec or spec[key] is None:
        return None
    v = spec[key]
    shown = _show(v) if isinstance(v, str | int | float | bool) else _type_name(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (v > hi and too_big is None):
        raise ValueError(f"{key} must be {what}, got {shown}")
    if v > hi:
        raise ValueError(f"{key} must be {too_big}, got {shown}")
    return v


def _regex(key: str, pattern: str, case_sensitive: bool = True) -> str:
    try:
        regex.compile(pattern, case_sensitive)
    except ValueError as e:
        # RE2's reason quotes the pattern raw (newlines and all): cleaned and cut to keep one short line.
        reason = _clean(str(e))
        reason = reason if len(reason) <= 120 else reason[:117] + "..."
        raise ValueError(f"{key} is not a valid RE2 regular expression {_show(pattern)}: {reason}") from None
    return pattern


def _match_map(spec: dict[str, Any], key: str, *, regex: bool, v2: bool = False) -> tuple[tuple[str, str | None], ...]:
    raw = spec.get(key)
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ValueError(f"{key} must be a mapping of name: value, got {_type_name(raw)}")
    out: list[tuple[str, str | None]] = []
    for name, value in raw.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{key} has a name that is not a string: {_show(name)}")
        if value is True and not regex:
            out.append((name, None))  # v0-v2: `true` means "must be present" (irhttpmapping.py)
        elif value is False and v2 and not regex:
            continue  # handwritten.conversion.go Convert_v2_MappingSpec_To_v3alpha1_MappingSpec drops `false`
        elif isinstance(value, str):
            out.append((name, _regex(f"{key}.{_clean(name)}", value) if regex else value))
        elif isinstance(value, int | float) and not isinstance(value, bool) and not regex:
            out.append((name, str(value)))  # YAML reads `x-version: 2` as a number; Emissary compares text
        else:
            raise ValueError(f"{key}.{_clean(name)} must be a string, got {_type_name(value)} {_show(value)}")
    return tuple(out)


def _header_adds(spec: dict[str, Any], key: str) -> tuple[HeaderAdd, ...]:
    raw = spec.get(key)
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ValueError(f"{key} must be a mapping of header: value, got {_type_name(raw)}")
    out = []
    for name, value in raw.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{key} has a header name that is not a string: {_show(name)}")
        if not is_field_name(name):
            raise ValueError(f"{key} has an invalid header name {_show(name)}")
        if isinstance(value, dict):  # {value: ..., append: ...}
            _known_keys(f"{key}.{name}", value, ("value", "append"))
            v, append = value.get("value"), value.get("append", True)
            if not isinstance(v, str | int | float) or isinstance(v, bool):
                raise ValueError(f"{key}.{name}.value must be a string, got {_type_name(v)}")
            if not isinstance(append, bool):
                raise ValueError(f"{key}.{name}.append must be a boolean, got {_type_name(append)}")
            out.append(HeaderAdd(name, _no_breakers(f"{key}.{name}.value", str(v)), append))
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            out.append(HeaderAdd(name, _no_breakers(f"{key}.{name}", str(value))))
        else:
            raise ValueError(f"{key}.{name} must be a string or {{value, append}}, got {_type_name(value)}")
    return tuple(out)


def _name_list(spec: dict[str, Any], key: str) -> tuple[str, ...]:
    raw = spec.get(key)
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise ValueError(f"{key} must be a list of header names")
    return tuple(raw)


def _regex_rewrite(spec: dict[str, Any]) -> tuple[str, str] | None:
    raw = spec.get("regex_rewrite")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"regex_rewrite must be a mapping with pattern and substitution, got {_type_name(raw)}")
    _known_keys("regex_rewrite", raw, ("pattern", "substitution"))
    pattern, subst = raw.get("pattern"), raw.get("substitution", "")
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("regex_rewrite.pattern must be a non-empty string")
    if not isinstance(subst, str):
        raise ValueError(f"regex_rewrite.substitution must be a string, got {_type_name(subst)}")
    _regex("regex_rewrite.pattern", pattern)
    _substitution(_no_space("regex_rewrite.substitution", subst), regex.compile(pattern).groups)
    return pattern, subst


def _substitution(subst: str, groups: int) -> None:
    """RE2 rewrite syntax, as Envoy's regex_rewrite uses it (re2.cc Rewrite/CheckRewriteString): a backslash
    is followed by a group digit (at most the pattern's group count) or by another backslash, nothing else."""
    i = 0
    while i < len(subst):
        if subst[i] != "\\":
            i += 1
            continue
        nxt = subst[i + 1 : i + 2]
        if nxt.isascii() and nxt.isdigit():
            if int(nxt) > groups:
                raise ValueError(
                    f"regex_rewrite.substitution refers to group \\{nxt}, but the pattern has {groups} group(s)"
                )
        elif nxt != "\\":
            raise ValueError(
                "regex_rewrite.substitution: a backslash must be followed by a group digit or a backslash, "
                f"got {_show(subst[i : i + 2])}"
            )
        i += 2


def _known_keys(key: str, raw: dict[Any, Any], known: tuple[str, ...]) -> None:
    """Nested objects refuse unknown keys as the spec does: `{value: x, apend: false}` must not pass."""
    for k in raw:
        if k not in known:
            raise ValueError(f"{key} has an unknown key {_show(k)} (expected {', '.join(known)})")


def _ambassador_ids(spec: dict[str, Any]) -> tuple[str, ...]:
    """config.py good_ambassador_id: `ambassadorId` is a synonym; a string or a list; default "default"."""
    key = "ambassadorId" if spec.get("ambassadorId") is not None else "ambassador_id"
    raw = spec.get(key)
    if raw is None:
        return ("default",)
    ids = [raw] if isinstance(raw, str) else raw
    if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
        raise ValueError(f"{key} must be a string or a list of strings, got {_type_name(raw)} {_show(raw)}")
    return tuple(ids)


def _redirect(spec: dict[str, Any], service: str) -> Redirect | None:
    """v3route.py V3Route: host_redirect answers a redirect to `service`; path/prefix/regex_redirect (one of them,
    irhttpmapping.py _enforce_mutual_exclusion) set its path; redirect_response_code one of 301..308."""
    if not _bool(spec, "host_redirect", False):
        return None
    # v3route.py V3Route: `if path_redirect:` / `elif prefix_redirect:`, so "" is unset.
    path = _str(spec, "path_redirect") or None
    prefix = _str(spec, "prefix_redirect") or None
    regex_redirect = None
    if spec.get("regex_redirect") is not None:
        regex_redirect = _regex_rewrite({"regex_rewrite": spec["regex_redirect"]})
    code = _int(spec, "redirect_response_code", 0, 999, "one of 301, 302, 303, 307, 308")
    if code is not None and code not in REDIRECT_CODES:
        raise ValueError(f"redirect_response_code must be one of 301, 302, 303, 307, 308, got {code}")
    return Redirect(_no_space("service", service), path, prefix, regex_redirect, code or 301)


def _allow_upgrade(spec: dict[str, Any]) -> tuple[str, ...]:
    """allow_upgrade: a list of upgrade types; use_websocket adds "websocket" (irhttpmapping.py __init__)."""
    raw = spec.get("allow_upgrade")
    out: list[str] = []
    if raw is not None:
        if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
            raise ValueError(f"allow_upgrade must be a list of upgrade types, got {_type_name(raw)} {_show(raw)}")
        out = [x.lower() for x in raw]
    _bool(spec, "use_websocket", False)
    if "use_websocket" in spec and "websocket" not in out:  # irhttpmapping.py: the key's presence, whatever its value
        out.append("websocket")
    return tuple(out)


def _core(spec: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    out = []
    for k in CORE_KEYS:
        if k in spec:
            v = spec[k]
            out.append((k, json.dumps(v, sort_keys=True, default=str), _show_py(v)))
    return tuple(out)


def _show_py(v: Any) -> str:
    """A value as Emissary prints it in its messages (Python's str: True, not true)."""
    text = str(v)
    return text if len(text) <= 120 else text[:117] + "..."


def qualify_service(service: str, namespace: str) -> str:
    """irbasemapping.py normalize_service_name: a bare name in another namespace than Ambassador's ("default")
    gets `.namespace` (not an IP, not localhost, no dot); the scheme and port stay."""
    scheme, host, port = _parse_service(service)
    if namespace == "default" or "." in host or ":" in host or host == "localhost" or _is_ip(host):
        return service
    return (f"{scheme}://" if scheme else "") + f"{host}.{namespace}" + (f":{port}" if port is not None else "")


def build_mapping(
    name: str, namespace: str, source: str, spec: dict[str, Any], api_version: str = "getambassador.io/v3alpha1"
) -> Mapping:
    """Validate one Mapping spec (its fields, whatever the form); raise ValueError naming the field."""
    ignored: list[str] = []
    for key in spec:
        if key in HONOURED_FIELDS:
            continue
        if key in IGNORED_FIELDS:
            ignored.append(key)
        else:
            # An unknown field is refused, not ignored: a typo such as `shaddow: true` would otherwise turn
            # a shadow into a canary taking production traffic.
            raise ValueError(f"unknown field {_show(key)}")
    prefix = _str(spec, "prefix", required=True, empty_ok=False)
    service = _str(spec, "service", required=True, empty_ok=False)
    assert prefix is not None and service is not None
    case_sensitive = _bool(spec, "case_sensitive", True)
    prefix_regex = _bool(spec, "prefix_regex", False)
    prefix_exact = _bool(spec, "prefix_exact", False)
    if prefix_regex and prefix_exact:
        raise ValueError("prefix_regex and prefix_exact cannot both be true")
    if prefix_regex:
        # Envoy's safe_regex ignores case_sensitive (v3route.py passes it; RE2 runs the pattern as written).
        _regex("prefix", prefix)
    if "rewrite" in spec and spec["rewrite"] is None:
        rewrite: str | None = ""
    else:
        rewrite = _str(spec, "rewrite")
        rewrite = "/" if rewrite is None else _no_space("rewrite", rewrite)
    regex_rewrite = _regex_rewrite(spec)
    if regex_rewrite is not None:
        rewrite = ""  # irhttpmapping.py: regex_rewrite replaces rewrite
    # "" is unset: irhttpmapping.py IRHTTPMapping.__init__ adds the :authority match only `if host:`.
    host = _str(spec, "host") or None
    host_regex = _bool(spec, "host_regex", False)
    hostname = _str(spec, "hostname") or None
    if api_version in V2_API_VERSIONS and hostname is None:
        # v2 -> v3alpha1 conversion (handwritten.conversion.go): host becomes a glob hostname, no host is "*".
        if host is None:
            hostname = "*"
        elif not host_regex:
            hostname, host = host, None
    if host is not None:
        if host_regex:
            _regex("host", host)
        elif "*" in host and hostname is None:
            raise ValueError(f"host exact-match {host} contains *, which cannot match anything.")
    v2 = api_version in V2_API_VERSIONS
    headers = _match_map(spec, "headers", regex=False, v2=v2)
    regex_headers = _match_map(spec, "regex_headers", regex=True)
    query_parameters = _match_map(spec, "query_parameters", regex=False, v2=v2)
    regex_query_parameters = _match_map(spec, "regex_query_parameters", regex=True)
    if v2:
        headers, regex_headers = _v2_bool_matches(headers, regex_headers)
        query_parameters, regex_query_parameters = _v2_bool_matches(query_parameters, regex_query_parameters)
    # Emissary's Python reads every resource as JSON from its Go side (encoding/json writes map keys sorted), so
    # these maps reach IRHTTPMapping.__init__, _group_id and _route_weight in name order, whatever the YAML order.
    headers, regex_headers = tuple(sorted(headers)), tuple(sorted(regex_headers))
    query_parameters, regex_query_parameters = tuple(sorted(query_parameters)), tuple(sorted(regex_query_parameters))
    for hname, hvalue in headers:
        if hname.lower() == ":authority" and hvalue is not None and "*" in hvalue:
            raise ValueError(f":authority exact-match '{hvalue}' contains *, which cannot match anything.")
    method = _str(spec, "method", empty_ok=False)
    method_regex = _bool(spec, "method_regex", False)
    if method is not None and method_regex:
        _regex("method", method)
    # Emissary takes any weight here; over 100 is an error of the group (irbasemappinggroup.py).
    weight = _int(spec, "weight", 0, 2**31 - 1, "an integer 0..100")
    precedence = _int(spec, "precedence", -(2**31), 2**31 - 1, "an integer")
    timeout_ms = _int(
        spec,
        "timeout_ms",
        0,
        MAX_TIMEOUT_MS,
        "a non-negative integer (milliseconds)",
        f"at most {MAX_TIMEOUT_MS} (milliseconds)",
    )
    # "" is unset: Envoy config_impl.cc finalizeRequestHeaders rewrites Host only for a non-empty host_rewrite_literal.
    host_rewrite = _str(spec, "host_rewrite") or None
    warnings: list[str] = []
    if not _bool(spec, "host_redirect", False):  # a redirect's service is a Location host, not a cluster
        service = _cluster_service(service, warnings)
    _parse_service(service)  # reject unparseable services now, not on the first request
    tls = spec.get("tls")
    if tls is not None and not isinstance(tls, bool | str):
        raise ValueError(f"tls must be true, false or a TLSContext name, got {_type_name(tls)} {_show(tls)}")
    if tls and not service.lower().startswith("https://"):
        # ircluster.py: `tls` (true or a TLSContext) originates TLS to the service, default port 443.
        service = "https://" + service.split("://", 1)[-1]
    shadow = _bool(spec, "shadow", False)
    if shadow and weight is not None and weight > 100:
        # v3route.py V3Route passes the shadow's weight unchecked as runtime_fraction numerator/HUNDRED; Envoy
        # protobuf/utility.cc evaluateFractionalPercent (random % 100 < numerator) then mirrors every request.
        warnings.append(f"shadow weight {weight} is over 100: every request is copied (100%)")
    grpc = _bool(spec, "grpc", False)
    redirect = _redirect(spec, service)
    return Mapping(
        name=name,
        namespace=namespace,
        source=source,
        prefix=prefix,
        service=qualify_service(service, namespace),
        prefix_regex=prefix_regex,
        prefix_exact=prefix_exact,
        rewrite=rewrite,
        regex_rewrite=regex_rewrite,
        hostname=hostname,
        host=host,
        host_regex=host_regex,
        method=method,
        headers=headers,
        regex_headers=regex_headers,  # type: ignore[arg-type]
        query_parameters=query_parameters,
        regex_query_parameters=regex_query_parameters,  # type: ignore[arg-type]
        precedence=precedence or 0,
        weight=weight,
        shadow=shadow,
        timeout_ms=timeout_ms,
        add_request_headers=_header_adds(spec, "add_request_headers"),
        remove_request_headers=_name_list(spec, "remove_request_headers"),
        add_response_headers=_header_adds(spec, "add_response_headers"),
        remove_response_headers=_name_list(spec, "remove_response_headers"),
        host_rewrite=_no_space("host_rewrite", host_rewrite) if host_rewrite is not None else None,
        case_sensitive=case_sensitive,
        ignored_fields=tuple(sorted(ignored)),
        method_regex=method_regex,
        ambassador_id=_ambassador_ids(spec),
        redirect=redirect,
        allow_upgrade=_allow_upgrade(spec),
        core=_core(spec),
        explicit=frozenset(k for k in spec if isinstance(k, str)),
        warnings=tuple(warnings),
        grpc=grpc,
    )


def _cluster_service(service: str, warnings: list[str]) -> str:
    """The service without a path, query or fragment, which Emissary ignores, posting ircluster.py
    IRCluster.__init__'s message (the service without its scheme) and still serving the Mapping."""
    scheme, sep, rest = service.strip().rpartition("://")
    cut = min((i for i in (rest.find(c) for c in "/?#;") if i >= 0), default=-1)
    if cut <= 0:  # nothing extra, or nothing but extra (left for _parse_service to refuse)
        return service
    warnings.append(f"service {rest} has extra URL components; ignoring everything but the host and port")
    return scheme + sep + rest[:cut]


def _v2_bool_matches(
    plain: tuple[tuple[str, str | None], ...], regex: tuple[tuple[str, str | None], ...]
) -> tuple[tuple[tuple[str, str | None], ...], tuple[tuple[str, str | None], ...]]:
    """getambassador.io/v2 `headers`/`query_parameters` `true` as the v2 -> v3alpha1 conversion makes it
    (handwritten.conversion.go Convert_v2_MappingSpec_To_v3alpha1_MappingSpec): a regex `.*` match, unless that
    name has a regex already. It counts as a regex in the group id and the route order (`.*`, regex flag)."""
    present = [n for n, v in plain if v is None]
    if not present:
        return plain, regex
    taken = {n for n, _ in regex}
    extra = tuple((n, ".*") for n in present if n not in taken)
    return tuple((n, v) for n, v in plain if v is not None), regex + extra


# ---------------------------------------------------------------- service addresses


@dataclass(frozen=True, slots=True)
class Address:
    scheme: str  # "http" or "https"
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


# A host is a DNS name, an IPv4 address or a bracketed IPv6 address: nothing that could corrupt a Host header.
_SERVICE_RE = re.compile(
    r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?(?P<host>\[[0-9A-Za-z:.%_-]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>[^/]*))?$"
)


def _parse_service(service: str) -> tuple[str | None, str, int | None]:
    """`[scheme://]host[.namespace][:port]` -> (scheme or None, host, port or None).

    Emissary: irbasemapping.py normalize_service_name, ircluster.py (scheme http/https, no path).
    """
    m = _SERVICE_RE.match(service.strip())
    if not m:
        raise ValueError(f"service must be [scheme://]host[:port], got {_show(service)}")
    scheme = m.group("scheme")
    if scheme is not None:
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"service scheme must be http or https, got {_show(scheme)}")
    host = m.group("host").strip("[]")
    port_s = m.group("port")
    port = None
    if port_s is not None:
        # isascii: str.isdigit accepts other scripts' digits (and superscripts, which int() refuses)
        if not (port_s.isascii() and port_s.isdigit()) or len(port_s) > 5 or not 0 < int(port_s) < 65536:
            raise ValueError(f"service port must be 1..65535, got {_show(port_s)}")
        port = int(port_s)
    return scheme, host, port


def service_address(service: str) -> Address:
    """The address a `service` names, with Emissary's defaults: http, port 80 (443 for https)."""
    scheme, host, port = _parse_service(service)
    scheme = scheme or "http"
    return Address(scheme, host, port or (443 if scheme == "https" else 80))


def parse_service_override(spec: str) -> tuple[str, Address, bool]:
    """`NAME=[scheme://]HOST:PORT` -> (NAME, address, scheme_given). Raises ValueError."""
    name, sep, target = spec.partition("=")
    name, target = name.strip(), target.strip()
    if not sep or not name or not target:
        raise ValueError(f"expected NAME=[scheme://]HOST:PORT, got {_show(spec)}")
    scheme, host, port = _parse_service(target)
    addr = Address(scheme or "http", host, port or (443 if scheme == "https" else 80))
    return name, addr, scheme is not None


def _is_ip(host: str) -> bool:
    return ":" in host or bool(re.fullmatch(r"[0-9.]+", host))


def override_matches(name: str, service: str, namespace: str) -> bool:
    """Does a `mapping_services` NAME stand for this Mapping's `service`?

    NAME matches with or without its `.namespace` suffix and port, and without the scheme:
    `myservice` matches `myservice.default:8080`, `myservice.default` matches `myservice` in namespace
    `default`.
    """
    try:
        _, host, port = _parse_service(service)
        _, n_host, n_port = _parse_service(name)
    except ValueError:
        return False
    if n_port is not None and n_port != port:
        return False
    host, n_host = host.lower(), n_host.lower()
    if n_host == host:
        return True
    if _is_ip(host):
        return False
    forms = {host.split(".", 1)[0]} if "." in host else {f"{host}.{namespace.lower()}"}
    return n_host in forms


# ---------------------------------------------------------------- documents


class _Limit(yaml.MarkedYAMLError):
    """A reading limit was reached (not a syntax error): reported as "YAML <problem> at line L column C"."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with bounds, and with every failure turned into a YAMLError carrying a position.

    PyYAML's constructors raise ValueError, IndexError, KeyError... on some hostile scalars (`!!int ''`,
    `2001-02-30`, a 5000-digit integer); here each becomes a ConstructorError at the scalar's line and column.
    """

    def __init__(self, text: str, nodes: int = 0) -> None:
        super().__init__(text)
        self._depth = 0
        self._nodes = nodes  # already read from the same file (an annotation's YAML counts with its file's)

    def compose_node(self, parent: Any, index: Any) -> Any:
        # The composer recurses once per nesting level: bound it here, where the position is known, rather
        # than by RecursionError, whose depth depends on the caller's stack.
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Limit(None, None, f"has more than {MAX_NODES} nodes in one file", self.peek_event().start_mark)
        if self._depth >= MAX_DEPTH:
            raise _Limit(None, None, f"nests deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: Any) -> Any:
        # A repeated key silently wins in PyYAML; Kubernetes refuses it ("mapping key already defined"), and a
        # second `shadow:` or `weight:` further down a spec is exactly the mistake that must not pass unseen.
        # Checked on the keys as written (at compose time): merging (`<<`) adds keys later, and overriding merged
        # keys is what merging is for.
        node = super().compose_mapping_node(anchor)
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            k = (key_node.tag, key_node.value)
            if k in seen:
                raise ConstructorError(None, None, f"duplicate key {_show(key_node.value)}", key_node.start_mark)
            seen.add(k)
        return node

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as e:  # noqa: BLE001 - third-party constructors fail in many ways; each is reported
            kind = node.tag.rsplit(":", 1)[-1] if isinstance(node.tag, str) else "value"
            value = f" {_show(node.value)}" if isinstance(node, yaml.ScalarNode) else ""
            reason = _clean(str(e).split(";")[0])[:120]
            raise ConstructorError(None, None, f"invalid {kind}{value}: {reason}", node.start_mark) from None

    def construct_yaml_int(self, node: Any) -> int:
        raw = node.value if isinstance(node.value, str) else ""
        if len(raw) > 100:  # checked before converting: Python refuses decimals past 4300 digits, in its own words
            raise ConstructorError(None, None, f"integer too large: {_show(raw)}", node.start_mark)
        value = super().construct_yaml_int(node)
        if value.bit_length() > MAX_INT_BITS:  # `1:1:1:...` (base 60) grows fast from short text
            raise ConstructorError(None, None, f"integer too large: {_show(raw)}", node.start_mark)
        return value

    def construct_yaml_str(self, node: Any) -> str:
        value = super().construct_yaml_str(node)
        # A "\udcff" escape yields a lone surrogate: not a character, and it cannot be logged or sent as UTF-8.
        if isinstance(value, str) and _SURROGATE_RE.search(value):
            raise ConstructorError(None, None, f"not a Unicode character in {_show(value)}", node.start_mark)
        return value


_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:str", _Loader.construct_yaml_str)

try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml
    _CLoader: type[_Loader] | None = None
else:

    class _CLoader(CParser, _Loader):  # type: ignore[no-redef]
        """libyaml's scanner and parser under the same composer (bounds, duplicate keys) and constructor: only
        the events come from C. PyYAML's reader still checks every character first, as it does for `_Loader`."""

        check_node = yaml.composer.Composer.check_node
        get_node = yaml.composer.Composer.get_node
        get_single_node = yaml.composer.Composer.get_single_node
        compose_document = yaml.composer.Composer.compose_document

        def __init__(self, text: str, nodes: int = 0) -> None:
            if yaml.reader.Reader.NON_PRINTABLE.search(text):
                raise ValueError("a character the reader refuses")
            CParser.__init__(self, text)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            yaml.composer.Composer.__init__(self)
            self._depth = 0
            self._nodes = nodes  # already read from the same file (an annotation's YAML counts with its file's)


def _at(mark: Any) -> str:
    return f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""


def _line_col(text: str, position: int) -> tuple[int, int]:
    line = text.count("\n", 0, position)
    return line + 1, position - (text.rfind("\n", 0, position) + 1) + 1


def _iter_documents(text: str, path: str, result: LoadResult) -> list[tuple[int, Any]]:
    """The documents of one file (or annotation), numbered from 1; raise MappingError (one line) for anything
    unreadable. `result.nodes` carries the YAML nodes read so far from the same file.

    libyaml reads them when PyYAML has it (four times faster: 10,000 Mappings take seconds in pure Python); any
    failure there is read again by the pure-Python loader, whose message is the one reported."""
    if _CLoader is not None:
        try:
            loader = _CLoader(text, result.nodes)
            docs = _documents(loader)
            result.nodes = loader._nodes
            return docs
        except Exception:  # noqa: BLE001, S110 - the reference reader below says what is wrong, in its words
            pass
    return _documents_reported(text, path, result)


def _documents(loader: Any) -> list[tuple[int, Any]]:
    docs: list[tuple[int, Any]] = []
    try:
        while loader.check_data():
            docs.append((len(docs) + 1, loader.get_data()))
    finally:
        loader.dispose()
    return docs


def _documents_reported(text: str, path: str, result: LoadResult) -> list[tuple[int, Any]]:
    docs: list[tuple[int, Any]] = []
    n = cur = 0
    loader: _Loader | None = None
    try:
        loader = _Loader(text, result.nodes)  # the reader checks every character here, before the first document
        while True:
            cur = n + 1
            if not loader.check_data():
                break
            data = loader.get_data()
            n = cur
            docs.append((n, data))
    except yaml.reader.ReaderError as e:
        # Not tied to a document: the reader refuses the character wherever it is.
        line, col = _line_col(text, e.position)
        char = e.character if isinstance(e.character, int) else ord(e.character)
        raise MappingError(
            f"{path}: YAML syntax error at line {line} column {col}: unacceptable character "
            f"#x{char:04x}: {_clean(str(e.reason))}"
        ) from None
    except _Limit as e:
        raise MappingError(f"{path} doc {cur}: YAML {e.problem}{_at(e.problem_mark)}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise MappingError(f"{path} doc {cur}: YAML syntax error{_at(mark)}: {_clean(problem)}") from None
    except RecursionError:  # not expected (nesting is bounded above); kept so a deep stack never escapes
        raise MappingError(f"{path} doc {cur}: YAML nesting too deep") from None
    finally:
        if loader is not None:
            result.nodes = loader._nodes
            loader.dispose()
    return docs


def _one_document(
    obj: Any, path: str, doc: int, item: int | None, result: LoadResult, annotation: str | None = None
) -> None:
    """One YAML document; `annotation`: where it was read from when it comes from a getambassador.io/config
    annotation (the location of its messages)."""
    where = annotation or _where(path, doc, item)
    if obj is None:
        return  # an empty document (e.g. a trailing `---`)
    if not isinstance(obj, dict):
        result.errors.append(f"{where}: document must be a mapping, got {_type_name(obj)}")
        return
    kind = obj.get("kind")
    api = obj.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        # Checked first: kind and apiVersion go through set lookups, which a list or a mapping would break.
        shown = "" if kind is None else f", got {_type_name(kind)} {_show(kind)}"
        result.errors.append(f"{where}: kind is required (e.g. kind: Mapping){shown}")
        return
    if kind in LIST_KINDS and annotation is not None:
        result.errors.append(f"{where}: a {kind} inside an annotation is not supported")
        return
    if kind in LIST_KINDS:
        items = obj.get("items")
        if not isinstance(items, list):
            result.errors.append(f"{where}: {kind} must have a list of items, got {_type_name(items)}")
            return
        if item is not None:
            result.errors.append(f"{where}: a {kind} inside a List is not supported")
            return
        for i, sub in enumerate(items, 1):
            _one_document(sub, path, doc, i, result)
        return
    if kind != "Mapping":
        if annotation is None and _annotated(obj, kind, path, doc, item, result):
            return
        result.notices.append(f"{where}: skipped kind {_clean(kind[:80])} (only Mappings are used)")
        return
    if not isinstance(api, str) or api not in MAPPING_API_VERSIONS:
        result.errors.append(
            f"{where}: apiVersion must be one of getambassador.io/v3alpha1, v2, v1 or ambassador/v0, v1; "
            f"got {_show(api)}"
        )
        return
    if api in FLAT_API_VERSIONS or ("spec" not in obj and "metadata" not in obj and "name" in obj):
        # The annotation style, which Emissary's KAT also writes with getambassador.io/ apiVersions.
        name, namespace = obj.get("name"), obj.get("namespace", "default")
        spec = {k: v for k, v in obj.items() if k not in FLAT_META_KEYS}
        name_field = "name"
    else:
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            result.errors.append(f"{where}: metadata must be a mapping with a name, got {_type_name(meta)}")
            return
        name, namespace = meta.get("name"), meta.get("namespace", "default")
        spec = obj.get("spec")
        name_field = "metadata.name"
    if not isinstance(name, str) or not name:
        result.errors.append(f"{where}: {name_field} is required and must be a string")
        return
    if not name.isprintable():
        # The name is in every message, log line and metric label of this Mapping: no line breaks or controls.
        result.errors.append(f"{where}: {name_field} must be printable text, got {_show(name)}")
        return
    if not isinstance(namespace, str) or not namespace or not namespace.isprintable():
        result.errors.append(f"{where} (Mapping {name}): namespace must be a non-empty printable string")
        return
    if not isinstance(spec, dict):
        result.errors.append(f"{where} (Mapping {name}.{namespace}): spec must be a mapping, got {_type_name(spec)}")
        return
    try:
        m = build_mapping(name, namespace, where, spec, api)
    except ValueError as e:
        result.errors.append(f"{where} (Mapping {name}.{namespace}): {e}")
        return
    if m.ignored_fields:
        result.notices.append(f"{where} (Mapping {m.key}): {not_honoured(m.ignored_fields)}")
    result.notices += [f"{where} (Mapping {m.key}): {w}" for w in m.warnings]
    result.mappings.append(m)


def not_honoured(fields: tuple[str, ...]) -> str:
    """The notice for fields accepted but not applied."""
    return f"{NOT_HONOURED_NOTE}: {', '.join(fields)}"


def _annotated(obj: dict[Any, Any], kind: str, path: str, doc: int, item: int | None, result: LoadResult) -> bool:
    """Mappings in a `getambassador.io/config` annotation (Emissary's original form): read from a Service or an
    Ingress, with the object's namespace as their default (pkg/snapshot/v1/annotations.go
    ParseAnnotationResources). Returns whether the object carries the annotation."""
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if not isinstance(annotations, dict) or ANNOTATION not in annotations:
        return False
    assert isinstance(meta, dict)
    name, namespace = meta.get("name"), meta.get("namespace")
    owner = f"{_clean(kind[:80])} {_show(name) if not isinstance(name, str) else _clean(name[:200])}"
    namespace = namespace if isinstance(namespace, str) and namespace else "default"
    where = f"{_where(path, doc, item)}, {owner}.{_clean(namespace[:200])}, annotation {ANNOTATION}"
    if kind not in ANNOTATED_KINDS:
        # PopulateAnnotations reads Services and Ingresses only (annotations_test.go: a Host's is not parsed).
        result.notices.append(f"{where}: skipped: Emissary reads this annotation only on a Service or an Ingress")
        return True
    text = annotations[ANNOTATION]
    if not isinstance(text, str):
        result.errors.append(f"{where}: must be YAML text, got {_type_name(text)}")
        return True
    try:
        docs = _iter_documents(text, where, result)
    except MappingError as e:
        result.errors.append(str(e))  # this object's Mappings are left out; the file's others load
        return True
    for k, sub in docs:
        if sub is None:
            continue
        if isinstance(sub, dict):
            sub = _unfold(sub, namespace)
        _one_document(sub, path, doc, item, result, annotation=f"{where} doc {k}")
    return True


def _unfold(obj: dict[Any, Any], namespace: str) -> dict[Any, Any]:
    """An annotation's resource in the metadata/spec form (annotations.go ParseAnnotationResources): name,
    namespace and generation go to metadata, everything else to spec; the namespace defaults to the owner's;
    `ambassador/` apiVersions become `getambassador.io/`."""
    meta = dict(obj["metadata"]) if isinstance(obj.get("metadata"), dict) else {}
    spec = dict(obj["spec"]) if isinstance(obj.get("spec"), dict) else {}
    out: dict[Any, Any] = {}
    for k, v in obj.items():
        if k in ("apiVersion", "kind", "metadata", "spec", "status"):
            continue
        if k in ("name", "namespace", "generation"):
            meta[k] = v
        elif k == "metadata_labels":
            meta["labels"] = v
        else:
            spec[k] = v
    if not isinstance(meta.get("namespace"), str) or not meta.get("namespace"):
        meta["namespace"] = namespace
    api = obj.get("apiVersion")
    if isinstance(api, str) and api.startswith("ambassador/"):
        api = "getambassador.io/" + api.removeprefix("ambassador/")
    out.update(apiVersion=api, kind=obj.get("kind"), metadata=meta, spec=spec)
    return out


def parse_text(text: str, path: str, result: LoadResult | None = None) -> LoadResult:
    """Parse one file's text into `result` (a new one if None). Never raises for bad input.

    Mappings of valid documents are kept beside the errors of others (for diagnostics); a caller that serves
    traffic must use `mappings` only when `errors` is empty, as `load_path` ensures.
    """
    result = result if result is not None else LoadResult()
    path = _clean(path)
    if len(text) > MAX_FILE_BYTES:
        _file_error(result, f"{path}: {_too_large(len(text), 'characters')}")
        return result
    result.nodes = 0
    try:
        docs = _iter_documents(text, path, result)
    except MappingError as e:
        _file_error(result, str(e))
        return result
    for doc, obj in docs:
        _one_document(obj, path, doc, None, result)
    return result


def _file_error(result: LoadResult, message: str) -> None:
    result.errors.append(message)
    result.file_errors.append(message)


def _too_large(size: int, unit: str) -> str:
    return (
        f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB ({size} {unit}); split the Mappings into "
        "several files in a directory"
    )


def check_duplicates(result: LoadResult) -> None:
    """A second Mapping with the same name.namespace is reported and dropped; the first one stays."""
    seen: dict[str, Mapping] = {}
    kept: list[Mapping] = []
    for m in result.mappings:
        first = seen.setdefault(m.key, m)
        if first is not m:
            result.errors.append(f"{m.source} (Mapping {m.key}): duplicate name, already defined at {first.source}")
        else:
            kept.append(m)
    result.mappings = kept


def mapping_files(path: str) -> list[str]:
    """A file, or the `*.yaml`/`*.yml` files of a directory (sorted, not recursive).

    As the shell's `*.yaml` does, hidden files are left out: editors and tools that write a temporary copy
    beside the file and rename it into place usually give it a leading dot, and a half-written copy must not load.
    """
    if os.path.isdir(path):
        return [
            os.path.join(path, f)
            for f in sorted(os.listdir(path))
            if f.endswith((".yaml", ".yml")) and not f.startswith(".") and os.path.isfile(os.path.join(path, f))
        ]
    return [path]


def load_path(path: str) -> LoadResult:
    """Read and validate every Mapping under `path`. Errors are collected, never raised.

    As in Emissary, an invalid Mapping is left out and the others load; `blocking()` says whether the caller
    may serve them (a file that cannot be read as YAML blocks everything, any error does under strict). Each file
    is read once, as it is at that moment; a file caught half-written either fails (and the caller keeps its
    previous configuration) or, cut at a document boundary, reads as fewer Mappings. Writers should replace files
    atomically (write a temporary file, then rename it over the old one).
    """
    result = LoadResult()
    try:
        files = mapping_files(path) if os.path.exists(path) else None
    except OSError as e:  # e.g. a directory that cannot be listed
        _file_error(result, f"{_clean(path)}: cannot read: {e.strerror or e}")
        return result
    if files is None:
        _file_error(result, f"{_clean(path)}: no such file or directory")
        return result
    for f in files:
        result.files.append(f)
        try:
            with open(f, "rb") as fh:
                raw = fh.read(MAX_FILE_BYTES + 1)  # never more: a huge file is refused without reading it all
            if len(raw) > MAX_FILE_BYTES:
                size = max(os.path.getsize(f), len(raw))  # a device or pipe reports no size
                _file_error(result, f"{_clean(f)}: {_too_large(size, 'bytes')}")
                continue
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            _file_error(result, f"{_clean(f)}: not UTF-8 text (byte {e.start})")
            continue
        except OSError as e:
            _file_error(result, f"{_clean(f)}: cannot read: {e.strerror or e}")
            continue
        parse_text(text, f, result)
    check_duplicates(result)
    return result
