"""The Mapping vocabulary: the fields this proxy applies, those it accepts without applying, the apiVersions and
kinds it reads, and the defaults and ranges of values (Emissary's, with their source)."""

from __future__ import annotations

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
REDIRECT_CODES = (301, 302, 303, 307, 308)  # v3route.py redirect_response_code

DEFAULT_TIMEOUT_MS = 3000  # Emissary: cluster_request_timeout_ms default (v3route.py)
MAX_TIMEOUT_MS = 2**31 - 1  # Envoy durations in ms fit an int32; larger values only overflow later

# Emissary-supported fields this proxy does not apply: listed per Mapping in /diag notices, once.
NOT_HONOURED_NOTE = "not honoured (ignored)"


def not_honoured(fields: tuple[str, ...]) -> str:
    """The notice for fields accepted but not applied."""
    return f"{NOT_HONOURED_NOTE}: {', '.join(fields)}"
