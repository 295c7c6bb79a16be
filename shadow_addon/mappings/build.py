"""One Mapping spec validated into a `Mapping` (`build_mapping`), whatever the YAML form it came in."""

from __future__ import annotations

from typing import Any

from ..addresses import is_ip as _is_ip
from ..addresses import parse_service as _parse_service
from ..words import show as _show
from .checks import (
    _allow_upgrade,
    _ambassador_ids,
    _bool,
    _core,
    _header_adds,
    _int,
    _match_map,
    _name_list,
    _no_space,
    _redirect,
    _regex,
    _regex_rewrite,
    _str,
    _type_name,
)
from .fields import HONOURED_FIELDS, IGNORED_FIELDS, MAX_TIMEOUT_MS, V2_API_VERSIONS
from .model import FieldError, Mapping


def qualify_service(service: str, namespace: str) -> str:
    """irbasemapping.py normalize_service_name: a bare name in another namespace than Ambassador's ("default")
    gets `.namespace` (not an IP, not localhost, no dot); the scheme and port stay."""
    scheme, host, port = _parse_service(service)
    if namespace == "default" or "." in host or ":" in host or host == "localhost" or _is_ip(host):
        return service
    return (f"{scheme}://" if scheme else "") + f"{host}.{namespace}" + (f":{port}" if port is not None else "")


def build_mapping(
    name: str,
    namespace: str,
    source: str,
    spec: dict[str, Any],
    api_version: str = "getambassador.io/v3alpha1",
    file: str = "",
    doc: int | None = None,
) -> Mapping:
    """Validate one Mapping spec (its fields, whatever the form); raise FieldError naming the field. `file` and
    `doc`: where it was read (kept beside `source`, which spells them for messages)."""
    ignored: list[str] = []
    for key in spec:
        if key in HONOURED_FIELDS:
            continue
        if key in IGNORED_FIELDS:
            ignored.append(key)
        else:
            # An unknown field is refused, not ignored: a typo such as `shaddow: true` would otherwise turn
            # a shadow into a canary taking production traffic.
            raise FieldError(str(key), f"unknown field {_show(key)}")
    prefix = _str(spec, "prefix", required=True, empty_ok=False)
    service = _str(spec, "service", required=True, empty_ok=False)
    assert prefix is not None and service is not None
    case_sensitive = _bool(spec, "case_sensitive", True)
    prefix_regex = _bool(spec, "prefix_regex", False)
    prefix_exact = _bool(spec, "prefix_exact", False)
    if prefix_regex and prefix_exact:
        raise FieldError("prefix_exact", "prefix_regex and prefix_exact cannot both be true")
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
            raise FieldError("host", f"host exact-match {host} contains *, which cannot match anything.")
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
            raise FieldError("headers", f":authority exact-match '{hvalue}' contains *, which cannot match anything.")
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
    try:
        _parse_service(service)  # reject unparseable services now, not on the first request
    except ValueError as e:
        raise FieldError("service", str(e)) from None
    tls = spec.get("tls")
    if tls is not None and not isinstance(tls, bool | str):
        raise FieldError("tls", f"tls must be true, false or a TLSContext name, got {_type_name(tls)} {_show(tls)}")
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
        file=file,
        doc=doc,
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
