"""Emissary `Mapping` records: reading every YAML form, validation with one-line errors.

Pure: `parse_text` takes text; `load_path` is the only function that touches the file system.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from . import regex

# Fields this addon applies with Emissary's semantics.
HONOURED_FIELDS = frozenset(
    {
        "prefix", "prefix_regex", "prefix_exact", "rewrite", "regex_rewrite", "service",
        "hostname", "host", "host_regex", "method", "headers", "regex_headers",
        "query_parameters", "regex_query_parameters", "precedence", "weight", "shadow",
        "timeout_ms", "add_request_headers", "remove_request_headers", "add_response_headers",
        "remove_response_headers", "host_rewrite", "case_sensitive",
    }
)  # fmt: skip

# Valid Emissary Mapping fields that have no meaning in a local proxy (or are not built yet): accepted,
# listed as "not honoured". Source: pkg/api/getambassador.io/v3alpha1/crd_mapping.go (MappingSpec).
IGNORED_FIELDS = frozenset(
    {
        "ambassador_id", "generation", "method_regex", "idle_timeout_ms", "connect_timeout_ms",
        "cluster_idle_timeout_ms", "cluster_max_connection_lifetime_ms", "cluster_tag", "stats_name",
        "auto_host_rewrite", "host_redirect", "path_redirect", "prefix_redirect", "regex_redirect",
        "redirect_response_code", "tls", "grpc", "allow_upgrade", "use_websocket", "cors", "retry_policy",
        "circuit_breakers", "load_balancer", "keepalive", "resolver", "labels", "bypass_auth",
        "bypass_error_response_overrides", "error_response_overrides", "dns_type", "enable_ipv4",
        "enable_ipv6", "add_linkerd_headers", "priority", "docs", "envoy_override", "modules",
        "outlier_detection", "respect_dns_ttl", "rewrite_host", "shadow_host", "v3StatsName",
        "v3health_checks", "health_checks", "add_request_headers_append", "rate_limits",
        "timeout", "circuit_breaker", "mappingSelector", "v2BoolHeaders", "v2BoolQueryParameters",
        "v2ExplicitTLS", "allow_websocket", "query_parameters_regex", "host_redirect_code",
        "namespace", "metadata_labels", "cluster_name", "load_balancer_policy",
    }
)  # fmt: skip

MAPPING_API_VERSIONS = frozenset(
    {
        "getambassador.io/v3alpha1", "getambassador.io/v2", "getambassador.io/v1", "getambassador.io/v0",
        "x.getambassador.io/v3alpha1", "ambassador/v0", "ambassador/v1", "ambassador/v2",
    }
)  # fmt: skip
# The annotation style: `name` and the fields at the top level, no metadata/spec.
FLAT_API_VERSIONS = frozenset({"ambassador/v0", "ambassador/v1", "ambassador/v2"})
LIST_KINDS = frozenset({"List", "MappingList"})
FLAT_META_KEYS = frozenset({"apiVersion", "kind", "name", "namespace", "metadata"})

DEFAULT_TIMEOUT_MS = 3000  # Emissary: cluster_request_timeout_ms default (v3route.py)


class MappingError(ValueError):
    """One configuration error, already formatted as the single line a user reads."""


@dataclass(frozen=True, slots=True)
class HeaderAdd:
    name: str
    value: str
    append: bool = True  # Emissary: add_request_headers `append` defaults to True (v3route.py)


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
    errors: list[str] = field(default_factory=list)  # invalid input: the whole load is rejected
    files: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- field validation


def _where(path: str, doc: int, item: int | None, name: str | None = None) -> str:
    loc = f"{path} doc {doc}" + (f" item {item}" if item is not None else "")
    return f"{loc} (Mapping {name})" if name else loc


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _str(spec: dict[str, Any], key: str, *, required: bool = False, empty_ok: bool = True) -> str | None:
    if key not in spec or spec[key] is None:
        if required:
            raise ValueError(f"{key} is required")
        return None
    v = spec[key]
    if not isinstance(v, str):
        raise ValueError(f"{key} must be a string, got {_type_name(v)} {v!r}")
    if not empty_ok and not v:
        raise ValueError(f"{key} must not be empty")
    return v


def _bool(spec: dict[str, Any], key: str, default: bool) -> bool:
    if key not in spec or spec[key] is None:
        return default
    v = spec[key]
    if not isinstance(v, bool):
        raise ValueError(f"{key} must be a boolean (true or false), got {_type_name(v)} {v!r}")
    return v


def _int(spec: dict[str, Any], key: str, lo: int, hi: int | None, what: str) -> int | None:
    if key not in spec or spec[key] is None:
        return None
    v = spec[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        shown = repr(v) if isinstance(v, str | int | float | bool) else _type_name(v)
        raise ValueError(f"{key} must be {what}, got {shown}")
    return v


def _regex(key: str, pattern: str) -> str:
    try:
        regex.compile(pattern)
    except ValueError as e:
        raise ValueError(f"{key} is not a valid RE2 regular expression {pattern!r}: {e}") from None
    return pattern


def _match_map(spec: dict[str, Any], key: str, *, regex: bool) -> tuple[tuple[str, str | None], ...]:
    raw = spec.get(key)
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ValueError(f"{key} must be a mapping of name: value, got {_type_name(raw)}")
    out: list[tuple[str, str | None]] = []
    for name, value in raw.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{key} has a name that is not a string: {name!r}")
        if value is True and not regex:
            out.append((name, None))  # v0-v2: `true` means "must be present" (irhttpmapping.py)
        elif isinstance(value, str):
            out.append((name, _regex(f"{key}.{name}", value) if regex else value))
        elif isinstance(value, int | float) and not isinstance(value, bool) and not regex:
            out.append((name, str(value)))  # YAML reads `x-version: 2` as a number; Emissary compares text
        else:
            raise ValueError(f"{key}.{name} must be a string, got {_type_name(value)} {value!r}")
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
            raise ValueError(f"{key} has a header name that is not a string: {name!r}")
        if isinstance(value, dict):  # {value: ..., append: ...}
            v, append = value.get("value"), value.get("append", True)
            if not isinstance(v, str | int | float) or isinstance(v, bool):
                raise ValueError(f"{key}.{name}.value must be a string, got {_type_name(v)}")
            if not isinstance(append, bool):
                raise ValueError(f"{key}.{name}.append must be a boolean, got {_type_name(append)}")
            out.append(HeaderAdd(name, str(v), append))
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            out.append(HeaderAdd(name, str(value)))
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
    pattern, subst = raw.get("pattern"), raw.get("substitution", "")
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("regex_rewrite.pattern must be a non-empty string")
    if not isinstance(subst, str):
        raise ValueError(f"regex_rewrite.substitution must be a string, got {_type_name(subst)}")
    return _regex("regex_rewrite.pattern", pattern), subst


def build_mapping(name: str, namespace: str, source: str, spec: dict[str, Any]) -> Mapping:
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
            raise ValueError(f"unknown field {key!r}")
    prefix = _str(spec, "prefix", required=True, empty_ok=False)
    service = _str(spec, "service", required=True, empty_ok=False)
    assert prefix is not None and service is not None
    prefix_regex = _bool(spec, "prefix_regex", False)
    prefix_exact = _bool(spec, "prefix_exact", False)
    if prefix_regex and prefix_exact:
        raise ValueError("prefix_regex and prefix_exact cannot both be true")
    if prefix_regex:
        _regex("prefix", prefix)
    if "rewrite" in spec and spec["rewrite"] is None:
        rewrite: str | None = ""
    else:
        rewrite = _str(spec, "rewrite")
        rewrite = "/" if rewrite is None else rewrite
    host = _str(spec, "host")
    host_regex = _bool(spec, "host_regex", False)
    if host is not None and host_regex:
        _regex("host", host)
    method = _str(spec, "method", empty_ok=False)
    weight = _int(spec, "weight", 0, 100, "an integer 0..100")
    precedence = _int(spec, "precedence", -(2**31), 2**31 - 1, "an integer")
    timeout_ms = _int(spec, "timeout_ms", 0, None, "a non-negative integer (milliseconds)")
    _parse_service(service)  # reject unparseable services now, not on the first request
    return Mapping(
        name=name,
        namespace=namespace,
        source=source,
        prefix=prefix,
        service=service,
        prefix_regex=prefix_regex,
        prefix_exact=prefix_exact,
        rewrite=rewrite,
        regex_rewrite=_regex_rewrite(spec),
        hostname=_str(spec, "hostname", empty_ok=False),
        host=host,
        host_regex=host_regex,
        method=method.upper() if method else None,
        headers=_match_map(spec, "headers", regex=False),
        regex_headers=_match_map(spec, "regex_headers", regex=True),  # type: ignore[arg-type]
        query_parameters=_match_map(spec, "query_parameters", regex=False),
        regex_query_parameters=_match_map(spec, "regex_query_parameters", regex=True),  # type: ignore[arg-type]
        precedence=precedence or 0,
        weight=weight,
        shadow=_bool(spec, "shadow", False),
        timeout_ms=timeout_ms,
        add_request_headers=_header_adds(spec, "add_request_headers"),
        remove_request_headers=_name_list(spec, "remove_request_headers"),
        add_response_headers=_header_adds(spec, "add_response_headers"),
        remove_response_headers=_name_list(spec, "remove_response_headers"),
        host_rewrite=_str(spec, "host_rewrite", empty_ok=False),
        case_sensitive=_bool(spec, "case_sensitive", True),
        ignored_fields=tuple(sorted(ignored)),
    )


# ---------------------------------------------------------------- service addresses


@dataclass(frozen=True, slots=True)
class Address:
    scheme: str  # "http" or "https"
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


_SERVICE_RE = re.compile(
    r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?(?P<host>\[[^\]]+\]|[^:/\[\]]+)(?::(?P<port>[^/]*))?$"
)


def _parse_service(service: str) -> tuple[str | None, str, int | None]:
    """`[scheme://]host[.namespace][:port]` -> (scheme or None, host, port or None).

    Emissary: irbasemapping.py normalize_service_name, ircluster.py (scheme http/https, no path).
    """
    m = _SERVICE_RE.match(service.strip())
    if not m:
        raise ValueError(f"service must be [scheme://]host[:port], got {service!r}")
    scheme = m.group("scheme")
    if scheme is not None:
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"service scheme must be http or https, got {scheme!r}")
    host = m.group("host").strip("[]")
    port_s = m.group("port")
    port = None
    if port_s is not None:
        if not port_s.isdigit() or not 0 < int(port_s) < 65536:
            raise ValueError(f"service port must be 1..65535, got {port_s!r}")
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
        raise ValueError(f"expected NAME=[scheme://]HOST:PORT, got {spec!r}")
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


def _iter_documents(text: str, path: str) -> list[tuple[int, Any]]:
    docs: list[tuple[int, Any]] = []
    n = cur = 0
    loader = yaml.SafeLoader(text)
    try:
        while True:
            cur = n + 1
            if not loader.check_data():
                break
            data = loader.get_data()
            n = cur
            docs.append((n, data))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise MappingError(f"{path} doc {cur}: YAML syntax error{at}: {problem}") from None
    except RecursionError:
        raise MappingError(f"{path} doc {cur}: YAML nesting too deep") from None
    finally:
        loader.dispose()
    return docs


def _one_document(obj: Any, path: str, doc: int, item: int | None, result: LoadResult) -> None:
    where = _where(path, doc, item)
    if obj is None:
        return  # an empty document (e.g. a trailing `---`)
    if not isinstance(obj, dict):
        result.errors.append(f"{where}: document must be a mapping, got {_type_name(obj)}")
        return
    kind = obj.get("kind")
    api = obj.get("apiVersion")
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
    if not isinstance(kind, str) or not kind:
        result.errors.append(f"{where}: kind is required (e.g. kind: Mapping)")
        return
    if kind != "Mapping":
        result.notices.append(f"{where}: skipped kind {kind} (only Mappings are used)")
        return
    if api not in MAPPING_API_VERSIONS:
        result.errors.append(
            f"{where}: apiVersion must be one of getambassador.io/v3alpha1, v2, v1 or ambassador/v0, v1; got {api!r}"
        )
        return
    if api in FLAT_API_VERSIONS:
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
        if not isinstance(spec, dict):
            label = f" (Mapping {name}.{namespace})" if isinstance(name, str) else ""
            result.errors.append(f"{where}{label}: spec must be a mapping, got {_type_name(spec)}")
            return
    if not isinstance(name, str) or not name:
        result.errors.append(f"{where}: {name_field} is required and must be a string")
        return
    if not isinstance(namespace, str) or not namespace:
        result.errors.append(f"{where} (Mapping {name}): namespace must be a non-empty string")
        return
    try:
        m = build_mapping(name, namespace, where, spec)
    except ValueError as e:
        result.errors.append(f"{_where(path, doc, item, f'{name}.{namespace}')}: {e}")
        return
    if m.ignored_fields:
        result.notices.append(
            f"{_where(path, doc, item, m.key)}: not honoured (ignored): {', '.join(m.ignored_fields)}"
        )
    result.mappings.append(m)


def parse_text(text: str, path: str, result: LoadResult | None = None) -> LoadResult:
    """Parse one file's text into `result` (a new one if None). Never raises for bad input."""
    result = result if result is not None else LoadResult()
    try:
        docs = _iter_documents(text, path)
    except MappingError as e:
        result.errors.append(str(e))
        return result
    for doc, obj in docs:
        _one_document(obj, path, doc, None, result)
    return result


def check_duplicates(result: LoadResult) -> None:
    seen: dict[str, Mapping] = {}
    for m in result.mappings:
        first = seen.setdefault(m.key, m)
        if first is not m:
            result.errors.append(f"{m.source} (Mapping {m.key}): duplicate name, already defined at {first.source}")


def mapping_files(path: str) -> list[str]:
    """A file, or the `*.yaml`/`*.yml` files of a directory (sorted, not recursive)."""
    if os.path.isdir(path):
        return [
            os.path.join(path, f)
            for f in sorted(os.listdir(path))
            if f.endswith((".yaml", ".yml")) and os.path.isfile(os.path.join(path, f))
        ]
    return [path]


def load_path(path: str) -> LoadResult:
    """Read and validate every Mapping under `path`. Errors are collected, never raised."""
    result = LoadResult()
    if not os.path.exists(path):
        result.errors.append(f"{path}: no such file or directory")
        return result
    for f in mapping_files(path):
        result.files.append(f)
        try:
            with open(f, "rb") as fh:
                raw = fh.read()
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            result.errors.append(f"{f}: not UTF-8 text (byte {e.start})")
            continue
        except OSError as e:
            result.errors.append(f"{f}: cannot read: {e.strerror or e}")
            continue
        parse_text(text, f, result)
    check_duplicates(result)
    return result
