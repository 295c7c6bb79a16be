"""Emissary's KAT Mapping sets (python/tests/src/tests/kat/), as the KAT writes them.

The flat form: apiVersion, kind, name and the fields at the top level. `{name}` is the KAT's `{self.name}` (NAME).
test_emissary_kat.py checks their facts against the routing table; test_e2e_emissary_kat.py runs some of them
through a real mitmdump.
"""

from __future__ import annotations

NAME = "shadowtest"  # the KAT's {self.name}

# t_shadow.py ShadowTestCANFLAKE
SHADOW_KAT = """
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-target
hostname: "*"
prefix: /{name}/mark/
rewrite: /mark/
service: https://target.default.svc.cluster.local
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-weighted-target
hostname: "*"
prefix: /{name}/weighted-mark/
rewrite: /mark/
service: https://target.default.svc.cluster.local
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-shadow
hostname: "*"
prefix: /{name}/mark/
rewrite: /mark/
service: shadow.default.svc.cluster.local
shadow: true
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-weighted-shadow
hostname: "*"
prefix: /{name}/weighted-mark/
rewrite: /mark/
service: shadow.default.svc.cluster.local
weight: 10
shadow: true
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-checkshadow
hostname: "*"
prefix: /{name}/check/
rewrite: /check/
service: shadow.default.svc.cluster.local
"""

# t_headerrouting.py HeaderRoutingTest
HEADER_KAT = """
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-target1
hostname: "*"
prefix: /{name}/
service: http://target1.default
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-target2
hostname: "*"
prefix: /{name}/
service: http://target2.default
headers:
    X-Route: target2
"""

# t_queryparameter_routing.py QueryParameterRoutingTest, ...WithRegexTest, ...PresentRoutingTest
QUERY_KAT = """
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-target1
hostname: "*"
prefix: /target/
service: http://target1.default
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-target2
hostname: "*"
prefix: /target/
service: http://target2.default
query_parameters:
    test_param: target2
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-regex
hostname: "*"
prefix: /regex/
service: http://target1.default
regex_query_parameters:
    test_param: "^[a-z].*"
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-present
hostname: "*"
prefix: /present/
service: http://target2.default
regex_query_parameters:
    test_param: ".*"
"""

# t_regexrewrite_forwarding.py RegexRewriteForwardingTest and ...WithExtractAndSubstituteTest (the second's prefix
# renamed /foo2/ so both fit one file)
REGEX_REWRITE_KAT = r"""
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  regex_rewrite_mapping
hostname: "*"
prefix: /foo/
service: http://foo.default
regex_rewrite:
    pattern: "/foo/([0-9]*)/list"
    substitution: "/bar/\\1"
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  regex_rewrite_mapping_2
hostname: "*"
prefix: /foo2/
service: http://foo.default
regex_rewrite:
    pattern: "/foo2/baz"
    substitution: "/baz/foo"
"""

# t_mappingtests_plain.py SimpleMapping, HostHeaderMapping, HostRedirectMapping, CanaryMapping, AddReqHeadersMapping,
# RemoveReqHeadersMapping, TLSOrigination, WebSocketMapping
PLAIN_KAT = """
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  simple
hostname: "*"
prefix: /simple/
service: http://target.default
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  hostheader
prefix: /hostheader/
service: http://target.default
host: inspector.external
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  redirect
hostname: "*"
prefix: /redirect/
service: foobar.com
host_redirect: true
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  redirect-2
hostname: "*"
prefix: /redirect-2/
case_sensitive: false
service: foobar.com
host_redirect: true
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  redirect-3
hostname: "*"
prefix: /redirect-3/foo/
service: foobar.com
host_redirect: true
path_redirect: /redirect/
redirect_response_code: 302
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  redirect-4
hostname: "*"
prefix: /redirect-4/foo/bar/baz
service: foobar.com
host_redirect: true
prefix_redirect: /foobar/baz
redirect_response_code: 307
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  redirect-5
hostname: "*"
prefix: /redirect-5/assets/([a-f0-9]{12})/images
prefix_regex: true
service: foobar.com
host_redirect: true
regex_redirect:
  pattern: /redirect-5/assets/([a-f0-9]{12})/images
  substitution: /images/\\1
redirect_response_code: 308
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  canary0
hostname: "*"
prefix: /canary0/
service: http://target.default
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  canary0-canary
hostname: "*"
prefix: /canary0/
service: http://canary.default
weight: 0
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  canary100
hostname: "*"
prefix: /canary100/
service: http://target.default
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  canary100-canary
hostname: "*"
prefix: /canary100/
service: http://canary.default
weight: 100
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  addreq
hostname: "*"
prefix: /addreq/
service: http://target.default
add_request_headers:
    zoo:
        append: False
        value: Zoo
    aoo:
        append: True
        value: aoo
    boo:
        value: boo
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  removereq
hostname: "*"
prefix: /removereq/
service: target.default
remove_request_headers:
- zoo
- aoo
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  tls
hostname: "*"
prefix: /tls/
service: https://secure.default
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  websocket
hostname: "*"
prefix: /websocket/
service: target.default
use_websocket: true
"""

# t_request_header.py EnvoyHeadersTest
ENVOY_HEADERS_KAT = """
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-target
hostname: "*"
prefix: /target/
rewrite: /rewrite/
timeout_ms: 5001
service: http://target
"""

# t_mappingtests_default.py MergeSlashesDisabled, SameMappingDifferentNamespaces; t_optiontests.py CaseSensitive
DEFAULT_KAT = """
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}
hostname: "*"
prefix: /{name}/status/
rewrite: /status/
service: httpbin
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name: target
namespace: same-mapping-1
hostname: "*"
prefix: /{name}-1/
service: target.default
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name: target
namespace: same-mapping-2
hostname: "*"
prefix: /{name}-2/
service: target.default
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name: {name}-case
hostname: "*"
prefix: /{name}-case/
service: target.default
case_sensitive: false
"""

# t_mappingtests_plain.py CanaryDiffMapping
CANARY_DIFF_KAT = """
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-{w}
hostname: "*"
prefix: /{name}-{w}/
service: http://target
host_rewrite: canary.1.example.com
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-{w}-canary
hostname: "*"
prefix: /{name}-{w}/
service: http://canary
host_rewrite: canary.2.example.com
weight: {w}
"""

# t_optiontests.py AddRequestHeaders, AddResponseHeaders, Rewrite
OPTIONS_KAT = """
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-options
hostname: "*"
prefix: /{name}-options/
service: target
rewrite: /foo
add_request_headers: {{foo: {{value: bar}}, moo: {{value: arf}}, zoo: {{append: true, value: bar}},
                      xoo: {{append: false, value: dwe}}, aoo: {{value: tyu}}}}
add_response_headers: {{foo: {{value: bar}}, moo: {{value: arf}}, zoo: {{append: true, value: bar}},
                       xoo: {{append: false, value: dwe}}, aoo: {{value: tyu}}}}
"""

# t_basics.py AmbassadorIDTest, InvalidResources
BASICS_KAT = """
---
apiVersion: getambassador.io/v3alpha1
kind:  Module
name:  ambassador
config:
  use_ambassador_namespace_for_service_resolution: true
"""
for _prefix, _ids in (
    ("findme", "[kat]"),
    ("findme-array", "[kat, missme]"),
    ("findme-array2", "[missme, kat]"),
    ("missme", "[missme]"),
    ("missme-array", "[missme1, missme2]"),
):
    BASICS_KAT += f"""
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  ambassadoridtest-{_prefix}
hostname: "*"
prefix: /{_prefix}/
service: target.default
ambassador_id: {_ids}
"""
BASICS_KAT += """
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata:
  name:  invalidresources-m-good-crd
spec:
  ambassador_id: ["kat"]
  hostname: "*"
  prefix: /good-crd/
  service: target.default
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata:
  name:  invalidresources-m-bad-crd
spec:
  ambassador_id: ["kat"]
  hostname: "*"
  prefix_bad: /bad-crd/
  service: target.default
"""
