"""The loader: every form users have, and every validation error with its exact one-line message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import CORPUS

from shadow_addon import mappings
from shadow_addon.mappings import Address, parse_text


def load(text: str, path: str = "m.yaml") -> mappings.LoadResult:
    r = parse_text(text, path)
    mappings.check_duplicates(r)
    return r


def one_error(text: str) -> str:
    r = load(text)
    assert len(r.errors) == 1, r.errors
    assert not r.mappings or r.errors
    return r.errors[0]


V3 = """
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata:
  name: quote-backend
  namespace: shop
spec:
  hostname: "*"
  prefix: /backend/
  service: quote
  weight: 10
  timeout_ms: 500
  add_request_headers:
    x-a: "1"
    x-b: {value: two, append: false}
  remove_request_headers: [cookie]
"""


def test_v3alpha1_fields_and_namespace() -> None:
    r = load(V3)
    assert r.errors == [] and len(r.mappings) == 1
    m = r.mappings[0]
    assert (m.name, m.namespace, m.key) == ("quote-backend", "shop", "quote-backend.shop")
    # irbasemapping.py normalize_service_name: a bare service in another namespace than Ambassador's is qualified.
    assert (m.prefix, m.service, m.weight, m.timeout_ms, m.rewrite) == ("/backend/", "quote.shop", 10, 500, "/")
    assert [(h.name, h.value, h.append) for h in m.add_request_headers] == [("x-a", "1", True), ("x-b", "two", False)]
    assert m.remove_request_headers == ("cookie",)
    assert m.source == "m.yaml doc 1"


@pytest.mark.parametrize("api", ["getambassador.io/v2", "getambassador.io/v1", "getambassador.io/v3alpha1"])
def test_crd_versions(api: str) -> None:
    r = load(f"apiVersion: {api}\nkind: Mapping\nmetadata: {{name: a}}\nspec: {{prefix: /a/, service: s}}\n")
    assert r.errors == [] and r.mappings[0].namespace == "default"


@pytest.mark.parametrize("api", ["ambassador/v0", "ambassador/v1", "getambassador.io/v3alpha1"])
def test_flat_annotation_form(api: str) -> None:
    """The annotation layout; Emissary's KAT (t_shadow.py) writes it with getambassador.io/v3alpha1 too."""
    r = load(
        f"---\napiVersion: {api}\nkind: Mapping\nname: qotm_mapping\nprefix: /qotm/\nrewrite: /qotm/\n"
        "service: qotm\nshadow: true\nweight: 10\nambassador_id: [blue]\n"
    )
    assert r.errors == []
    m = r.mappings[0]
    assert (m.name, m.prefix, m.rewrite, m.service, m.shadow, m.weight, m.ambassador_id) == (
        "qotm_mapping",
        "/qotm/",
        "/qotm/",
        "qotm",
        True,
        10,
        ("blue",),
    )


def test_multi_document_and_other_kinds_skipped_with_notice() -> None:
    text = V3 + "---\napiVersion: v1\nkind: Service\nmetadata: {name: quote}\n---\n" + V3.replace("quote-backend", "q2")
    r = load(text)
    assert r.errors == [] and [m.name for m in r.mappings] == ["quote-backend", "q2"]
    assert r.mappings[1].source == "m.yaml doc 3"
    assert r.notices == ["m.yaml doc 2: skipped kind Service (only Mappings are used)"]


@pytest.mark.parametrize("kind", ["List", "MappingList"])
def test_list_forms(kind: str) -> None:
    text = f"""
apiVersion: v1
kind: {kind}
items:
- apiVersion: getambassador.io/v3alpha1
  kind: Mapping
  metadata: {{name: a, namespace: default, resourceVersion: "1"}}
  spec: {{prefix: /a/, service: a}}
- apiVersion: getambassador.io/v3alpha1
  kind: Mapping
  metadata: {{name: b}}
  spec: {{prefix: /b/, service: b, weight: -1}}
"""
    r = load(text)
    assert [m.name for m in r.mappings] == ["a"]
    assert r.errors == ["m.yaml doc 1 item 2 (Mapping b.default): weight must be an integer 0..100, got -1"]


def test_ignored_fields_are_notices() -> None:
    r = load(
        "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: a}\n"
        "spec: {prefix: /a/, service: a, bypass_auth: true, cors: {origins: '*'}}\n"
    )
    assert r.errors == []
    assert r.notices == ["m.yaml doc 1 (Mapping a.default): not honoured (ignored): bypass_auth, cors"]


def spec(body: str, name: str = "cart") -> str:
    return f"apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: {name}}}\nspec: {{{body}}}\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("service: s", "prefix is required"),
        ("prefix: /a/", "service is required"),
        ("prefix: /a/, service: s, weight: -1", "weight must be an integer 0..100, got -1"),
        ("prefix: /a/, service: s, weight: 1.5", "weight must be an integer 0..100, got 1.5"),
        ("prefix: /a/, service: s, weight: ten", "weight must be an integer 0..100, got 'ten'"),
        ("prefix: /a/, service: s, shadow: 'yes'", "shadow must be a boolean (true or false), got str 'yes'"),
        ("prefix: /a/, service: s, shadow: 1", "shadow must be a boolean (true or false), got int 1"),
        (
            "prefix: '/a/(', prefix_regex: true, service: s",
            "prefix is not a valid RE2 regular expression '/a/(': missing ): /a/(",
        ),
        (
            "prefix: /a/, service: s, regex_headers: {x-a: '['}",
            "regex_headers.x-a is not a valid RE2 regular expression '[': missing ]: [",
        ),
        (
            "prefix: '/a/(?=b)', prefix_regex: true, service: s",
            "prefix is not a valid RE2 regular expression '/a/(?=b)': invalid perl operator: (?=",
        ),
        ("prefix: /a/, service: s, shaddow: true", "unknown field 'shaddow'"),
        ("prefix: /a/, service: 'ftp://x'", "service scheme must be http or https, got 'ftp'"),
        ("prefix: /a/, service: 'x:99999'", "service port must be 1..65535, got '99999'"),
        ("prefix: /a/, service: '/path'", "service must be [scheme://]host[:port], got '/path'"),
        ("prefix: /a/, service: s, timeout_ms: -5", "timeout_ms must be a non-negative integer (milliseconds), got -5"),
        ("prefix: /a/, service: s, precedence: high", "precedence must be an integer, got 'high'"),
        ("prefix: /a/, service: s, headers: [x]", "headers must be a mapping of name: value, got list"),
        ("prefix: '', service: s", "prefix must not be empty"),
    ],
)
def test_validation_errors_name_file_doc_mapping_and_field(body: str, message: str) -> None:
    assert one_error("---\n" + spec(body)) == f"m.yaml doc 1 (Mapping cart.default): {message}"


def test_document_errors() -> None:
    assert one_error("- a\n- b\n") == "m.yaml doc 1: document must be a mapping, got list"
    assert one_error(spec("prefix: /a/, service: s") + "---\nplain text\n") == (
        "m.yaml doc 2: document must be a mapping, got str"
    )
    assert one_error("apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nspec: {}\n") == (
        "m.yaml doc 1: metadata must be a mapping with a name, got null"
    )
    assert one_error("apiVersion: ambassador/v1\nkind: Mapping\nprefix: /a/\nservice: s\n") == (
        "m.yaml doc 1: name is required and must be a string"
    )
    assert one_error("apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: x}\n") == (
        "m.yaml doc 1 (Mapping x.default): spec must be a mapping, got null"
    )
    assert one_error("apiVersion: foo/v9\nkind: Mapping\nmetadata: {name: x}\nspec: {}\n").startswith(
        "m.yaml doc 1: apiVersion must be one of"
    )
    assert one_error("metadata: {name: x}\n") == "m.yaml doc 1: kind is required (e.g. kind: Mapping)"


def test_yaml_syntax_error_names_doc_line_and_column() -> None:
    text = spec("prefix: /a/, service: s") + "---\nkind: Mapping\nspec: {prefix: [unclosed\n"
    assert one_error(text) == (
        "m.yaml doc 2: YAML syntax error at line 8 column 1: expected ',' or ']', but got '<stream end>'"
    )


def test_duplicate_name_namespace() -> None:
    r = load(spec("prefix: /a/, service: s") + "---\n" + spec("prefix: /b/, service: t"))
    assert r.errors == ["m.yaml doc 2 (Mapping cart.default): duplicate name, already defined at m.yaml doc 1"]


def test_rewrite_defaults_and_empty() -> None:
    assert load(spec("prefix: /a/, service: s")).mappings[0].rewrite == "/"
    assert load(spec("prefix: /a/, service: s, rewrite: ''")).mappings[0].rewrite == ""
    assert load(spec("prefix: /a/, service: s, rewrite: /b/")).mappings[0].rewrite == "/b/"


def test_v2_header_true_means_present_and_numbers_are_text() -> None:
    m = load(spec("prefix: /a/, service: s, headers: {x-canary: true, x-version: 2}")).mappings[0]
    assert m.headers == (("x-canary", None), ("x-version", "2"))


def test_service_addresses() -> None:
    assert mappings.service_address("quote") == Address("http", "quote", 80)
    assert mappings.service_address("https://quote.shop") == Address("https", "quote.shop", 443)
    assert mappings.service_address("quote:8080") == Address("http", "quote", 8080)
    assert mappings.service_address("http://[::1]:81") == Address("http", "::1", 81)
    assert str(Address("http", "::1", 81)) == "http://[::1]:81"


@pytest.mark.parametrize(
    ("name", "service", "namespace", "expected"),
    [
        ("myservice", "myservice.default", "default", True),
        ("myservice", "myservice.default:8080", "default", True),
        ("myservice.default", "myservice", "default", True),
        ("myservice.default", "myservice", "other", False),
        ("myservice:8080", "myservice:9090", "default", False),
        ("myservice", "https://myservice", "default", True),
        ("my", "myservice", "default", False),
        ("127.0.0.1", "127.0.0.1:8500", "default", True),
        ("127", "127.0.0.1:8500", "default", False),
    ],
)
def test_override_matching(name: str, service: str, namespace: str, expected: bool) -> None:
    assert mappings.override_matches(name, service, namespace) is expected


def test_parse_override() -> None:
    assert mappings.parse_service_override("a=127.0.0.1:81") == ("a", Address("http", "127.0.0.1", 81), False)
    assert mappings.parse_service_override("a.ns=https://h") == ("a.ns", Address("https", "h", 443), True)
    for bad in ("a", "=h:1", "a=", "a=ftp://x:1"):
        with pytest.raises(ValueError):
            mappings.parse_service_override(bad)


def test_directory_sorted_non_recursive_and_missing(tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text(spec("prefix: /b/, service: s", "b"))
    (tmp_path / "a.yaml").write_text(spec("prefix: /a/, service: s", "a"))
    (tmp_path / "notes.txt").write_text("not yaml: [")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("broken: [")
    r = mappings.load_path(str(tmp_path))
    assert r.errors == [] and [m.name for m in r.mappings] == ["a", "b"]
    assert r.files == [str(tmp_path / "a.yaml"), str(tmp_path / "b.yml")]
    missing = mappings.load_path(str(tmp_path / "nope.yaml"))
    assert missing.errors == [f"{tmp_path}/nope.yaml: no such file or directory"]
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe")
    assert mappings.load_path(str(tmp_path)).errors == [f"{tmp_path}/bin.yaml: not UTF-8 text (byte 0)"]


if CORPUS.is_dir():  # the maintainers' corpus of Emissary's documentation examples (CI has it); a clone does not

    @pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.yaml")) + ["shadowing-v3alpha1-dir"])
    def test_every_emissary_documentation_example_loads(name: str) -> None:
        from shadow_addon import explain, routing

        r = mappings.load_path(str(CORPUS / name))
        assert r.errors == [] and r.mappings, (r.errors, r.notices)
        explain.text(routing.build_table(r.mappings), r)  # and explains itself


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "mappings").glob("*.yaml"))
)
def test_shipped_example_mappings_load_cleanly(name: str) -> None:
    from shadow_addon import routing

    r = mappings.load_path(str(Path(__file__).resolve().parents[1] / "mappings" / name))
    assert r.errors == [] and r.mappings
    assert routing.build_table(r.mappings).errors == ()


# ---------------------------------------------------------------- Emissary's forms and conversions


@pytest.mark.parametrize(
    ("spec", "hostname", "host"),
    [
        ("prefix: /a/, service: s", "*", None),  # no host: hostname "*"
        ("prefix: /a/, service: s, host: a.example.com", "a.example.com", None),  # host becomes a glob hostname
        ("prefix: /a/, service: s, host: '*.example.com'", "*.example.com", None),
        ("prefix: /a/, service: s, host: 'a.*', host_regex: true", None, "a.*"),  # a regex stays a host regex
    ],
)
def test_v2_host_converts_as_the_v2_conversion_does(spec: str, hostname: str | None, host: str | None) -> None:
    """pkg/api/getambassador.io/v2/handwritten.conversion.go Convert_v2_MappingSpec_To_v3alpha1_MappingSpec."""
    r = load(f"apiVersion: getambassador.io/v2\nkind: Mapping\nmetadata: {{name: a}}\nspec: {{{spec}}}\n")
    assert r.errors == []
    assert (r.mappings[0].hostname, r.mappings[0].host) == (hostname, host)


def test_v3_exact_host_with_a_star_is_an_error() -> None:
    """irhttpmapping.py __init__: an exact host (or `:authority` header) with `*` cannot match anything."""
    base = "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: a}\nspec: "
    assert one_error(base + "{prefix: /a/, service: s, host: '*.x.com'}").endswith(
        "host exact-match *.x.com contains *, which cannot match anything."
    )
    assert one_error(base + "{prefix: /a/, service: s, headers: {':authority': 'a*'}}").endswith(
        ":authority exact-match 'a*' contains *, which cannot match anything."
    )


@pytest.mark.parametrize(
    ("extra", "service", "address"),
    [
        ("tls: true", "https://quote.shop", Address("https", "quote.shop", 443)),
        ("tls: my-context", "https://quote.shop", Address("https", "quote.shop", 443)),
        ("tls: false", "quote.shop", Address("http", "quote.shop", 80)),
    ],
)
def test_tls_means_tls_to_the_service(extra: str, service: str, address: Address) -> None:
    """ircluster.py: `tls` (true or a TLSContext name) originates TLS, default port 443; irbasemapping.py
    normalize_service_name qualifies a bare name with the Mapping's namespace."""
    r = load(
        "apiVersion: getambassador.io/v2\nkind: Mapping\nmetadata: {name: a, namespace: shop}\n"
        f"spec: {{prefix: /a/, service: quote, {extra}}}\n"
    )
    assert r.errors == [] and r.mappings[0].service == service
    assert mappings.service_address(r.mappings[0].service) == address


def test_weight_over_100_loads_and_is_the_groups_error() -> None:
    """Emissary posts weights over 100 at the group (irbasemappinggroup.py), not as an invalid Mapping."""
    head = "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: a}\n"
    r = load(head + "spec: {prefix: /, service: s, weight: 150}")
    assert r.errors == [] and r.mappings[0].weight == 150


ANNOTATED_SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: quote
  namespace: shop
  annotations:
    getambassador.io/config: |
      ---
      apiVersion: ambassador/v1
      kind: Mapping
      name: quote-backend
      prefix: /backend/
      service: quote:80
      ---
      apiVersion: getambassador.io/v3alpha1
      kind: Mapping
      name: quote-next
      namespace: staging
      hostname: "*"
      prefix: /backend/
      service: quote-v2
      shadow: true
      ---
      apiVersion: getambassador.io/v3alpha1
      kind: Module
      name: ambassador
spec:
  ports: [{port: 80}]
"""


def test_mappings_in_a_service_annotation_load_with_its_namespace() -> None:
    """pkg/snapshot/v1/annotations.go ParseAnnotationResources: flat fields fold into metadata/spec, the Service's
    namespace is the default, `ambassador/` apiVersions become `getambassador.io/` (then v1 converts as v2 does)."""
    r = load(ANNOTATED_SERVICE)
    assert r.errors == []
    assert [(m.key, m.service, m.hostname, m.shadow) for m in r.mappings] == [
        ("quote-backend.shop", "quote.shop:80", "*", False),
        ("quote-next.staging", "quote-v2.staging", "*", True),
    ]
    where = "m.yaml doc 1, Service quote.shop, annotation getambassador.io/config"
    assert r.mappings[0].source == f"{where} doc 1"
    assert r.notices == [f"{where} doc 3: skipped kind Module (only Mappings are used)"]


def test_annotations_in_a_list_and_on_an_ingress_and_errors_named_by_their_owner() -> None:
    text = """
apiVersion: v1
kind: List
items:
- apiVersion: networking.k8s.io/v1
  kind: Ingress
  metadata:
    name: web
    annotations: {getambassador.io/config: "kind: Mapping\\nname: w\\nprefix: /w/\\nservice: w\\napiVersion: getambassador.io/v3alpha1"}
- apiVersion: v1
  kind: Service
  metadata:
    name: bad
    annotations: {getambassador.io/config: "apiVersion: getambassador.io/v3alpha1\\nkind: Mapping\\nname: b\\nprefix: /b/\\nservice: b\\nweight: ten"}
- apiVersion: v1
  kind: Service
  metadata:
    name: broken
    annotations: {getambassador.io/config: "kind: [Mapping"}
"""  # noqa: E501
    r = load(text)
    assert [m.key for m in r.mappings] == ["w.default"]
    assert r.errors[0] == (
        "m.yaml doc 1 item 2, Service bad.default, annotation getambassador.io/config doc 1 (Mapping b.default): "
        "weight must be an integer 0..100, got 'ten'"
    )
    assert r.errors[1].startswith(
        "m.yaml doc 1 item 3, Service broken.default, annotation getambassador.io/config doc 1: YAML syntax error"
    )
    assert r.file_errors == []  # one object's annotation does not stop the file


def test_annotations_elsewhere_are_skipped_as_emissary_skips_them() -> None:
    """PopulateAnnotations reads Services and Ingresses only (annotations_test.go leaves a Host's unparsed)."""
    text = ANNOTATED_SERVICE.replace("kind: Service", "kind: Deployment", 1)
    r = load(text)
    assert r.mappings == [] and r.errors == []
    assert r.notices == [
        "m.yaml doc 1, Deployment quote.shop, annotation getambassador.io/config: skipped: Emissary reads this "
        "annotation only on a Service or an Ingress"
    ]


def test_annotation_yaml_counts_with_its_files_node_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Service has 22 YAML nodes and its annotation 35: each within 40, together over it."""
    monkeypatch.setattr(mappings.yamlreader, "MAX_NODES", 40)
    r = load(ANNOTATED_SERVICE)
    assert r.errors == [
        "m.yaml doc 1, Service quote.shop, annotation getambassador.io/config doc 2: YAML has more than 40 nodes in "
        "one file at line 11 column 1"
    ]


def test_grpc_is_honoured_not_noticed() -> None:
    r = load(
        "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: g}\n"
        "spec: {prefix: /g/, service: g, grpc: true}\n"
    )
    assert r.notices == [] and r.errors == [] and r.mappings[0].grpc is True


def test_empty_strings_are_unset() -> None:
    """irhttpmapping.py IRHTTPMapping.__init__ adds the :authority match only `if host:`; Envoy config_impl.cc
    finalizeRequestHeaders rewrites Host only for a non-empty host_rewrite_literal; v3route.py V3Route takes
    path_redirect/prefix_redirect only when truthy. The Mapping is served, as if the field were not there."""
    r = load(spec("prefix: /a/, service: s, host_rewrite: '', hostname: '', host: ''"))
    assert r.errors == []
    m = r.mappings[0]
    assert m.host_rewrite is None and m.hostname is None and m.host is None
    r = load(spec("prefix: /a/, service: s, host_redirect: true, path_redirect: '', prefix_redirect: /b/"))
    assert r.errors == [] and r.mappings[0].redirect is not None
    assert r.mappings[0].redirect.path is None and r.mappings[0].redirect.prefix == "/b/"


def test_service_with_a_path_keeps_scheme_host_and_port_with_a_warning() -> None:
    """ircluster.py IRCluster.__init__: "service ... has extra URL components; ignoring everything but the host
    and port" is posted and the cluster is built from scheme, host and port."""
    r = load(spec("prefix: /a/, service: 'http://tsvc:8080/'"))
    assert r.errors == []
    assert r.mappings[0].service == "http://tsvc:8080"
    assert mappings.service_address(r.mappings[0].service) == Address("http", "tsvc", 8080)
    assert r.notices == [
        "m.yaml doc 1 (Mapping cart.default): service tsvc:8080/ has extra URL components; ignoring "
        "everything but the host and port"
    ]
    r = load(spec("prefix: /a/, service: 'tsvc/v1?x=1'"))
    assert r.errors == [] and r.mappings[0].service == "tsvc" and len(r.notices) == 1


def test_v2_boolean_headers_and_query_parameters_convert_as_the_v2_conversion_does() -> None:
    """handwritten.conversion.go Convert_v2_MappingSpec_To_v3alpha1_MappingSpec: `true` becomes a regex `.*` match
    (a regex the Mapping already has for that name stays), `false` is dropped; v3alpha1 keeps `true` as present."""
    r = load(
        "apiVersion: getambassador.io/v2\nkind: Mapping\nmetadata: {name: a}\n"
        "spec: {prefix: /a/, service: s, headers: {x-a: true, x-b: false, x-c: '1', x-d: true},\n"
        "       regex_headers: {x-d: '^v'}, query_parameters: {q: true, r: false}}\n"
    )
    assert r.errors == []
    m = r.mappings[0]
    assert m.headers == (("x-c", "1"),)
    assert m.regex_headers == (("x-a", ".*"), ("x-d", "^v"))  # in name order, as Emissary reads them
    assert m.query_parameters == () and m.regex_query_parameters == (("q", ".*"),)


@pytest.mark.parametrize("api", ["ambassador/v1", "ambassador/v2"])
def test_annotation_versions_convert_as_v2(api: str) -> None:
    """pkg/snapshot/v1/annotations.go reads `ambassador/vN` as `getambassador.io/vN`, which the v2 conversion turns
    into v3alpha1: no host is `hostname: "*"`, a `true` header a regex `.*`."""
    r = load(f"---\napiVersion: {api}\nkind: Mapping\nname: a\nprefix: /a/\nservice: s\nheaders: {{x-a: true}}\n")
    assert r.errors == []
    m = r.mappings[0]
    assert m.hostname == "*" and m.regex_headers == (("x-a", ".*"),) and m.headers == ()


def test_load_errors_carry_their_file_document_mapping_and_field() -> None:
    r = load(
        "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: a}\n"
        "spec: {prefix: /a/, service: s, shaddow: true}\n---\nkind: Mapping\n"
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: b}\n"
        "spec: {prefix: /b/, service: s, add_request_headers: {x-a: {value: 1, apend: false}}}\n"
    )
    first, second, third = r.errors
    assert first == "m.yaml doc 1 (Mapping a.default): unknown field 'shaddow'"  # the one line, as before
    assert isinstance(first, mappings.LoadError)
    assert (first.file, first.doc, first.mapping, first.field, first.message) == (
        "m.yaml",
        1,
        "a.default",
        "shaddow",
        "unknown field 'shaddow'",
    )
    assert (second.file, second.doc, second.mapping, second.field) == ("m.yaml", 2, None, "apiVersion")
    assert (third.doc, third.mapping, third.field) == (3, "b.default", "add_request_headers.x-a")
    assert third.message.startswith("add_request_headers.x-a has an unknown key 'apend'")
    assert r.errors_of("a.default") == [first]
    bad = load("a: 1\n---\na: [\n").errors[0]  # a YAML error: the file stops loading, its document is known
    assert (bad.file, bad.doc, bad.mapping, bad.field) == ("m.yaml", 2, None, None)
    assert bad.message.startswith("YAML syntax error at line 4")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"weight": "ten"}, "weight"),
        ({"service": "ftp://x"}, "service"),
        ({"prefix_regex": True, "prefix": "(a"}, "prefix"),
        ({"regex_headers": {"x-a": "(a"}}, "regex_headers.x-a"),
        ({"regex_rewrite": {"pattern": "/(a)", "substitution": "\\2"}}, "regex_rewrite.substitution"),
        ({"tls": 3}, "tls"),
    ],
)
def test_a_field_error_names_its_field(spec: dict[str, object], field: str) -> None:
    doc = {"apiVersion": "getambassador.io/v3alpha1", "kind": "Mapping", "metadata": {"name": "a"}}
    (e,) = load(json.dumps({**doc, "spec": {"prefix": "/a/", "service": "s", **spec}})).errors
    assert (e.mapping, e.field) == ("a.default", field), str(e)


def test_a_duplicate_name_error_is_at_the_second_document() -> None:
    doc = "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: a}\nspec: {prefix: /a/, service: s}\n"
    r = load(doc + "---\n" + doc)
    (e,) = r.errors
    assert (e.file, e.doc, e.mapping) == ("m.yaml", 2, "a.default")
    assert e == "m.yaml doc 2 (Mapping a.default): duplicate name, already defined at m.yaml doc 1"
    assert [m.doc for m in r.mappings] == [1]
