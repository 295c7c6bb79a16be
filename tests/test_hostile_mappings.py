"""Hostile Mapping input: whatever the bytes, the loader answers with a configuration or one-line errors.

The promise: bad input gets a clear, one-line error naming the file (and the document, Mapping and field), never a
traceback and never a hang; a load with errors yields no Mappings, so nothing partial is ever served. Property
tests throw arbitrary bytes, text, YAML token soup and YAML value trees at the loader; the corpus under
tests/malformed/ pins the exact line for each kind of mistake, and one real mitmdump start-up shows that line is
what a user sees.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy.http import Headers
from support import ADDON, MITMDUMP, ROOT, free_port, run_process

from shadow_addon import mappings, routing
from shadow_addon.mappings import LoadResult, load_path, parse_text
from shadow_addon.routing import RequestView

MALFORMED = ROOT / "tests" / "malformed"
EXPECTED = MALFORMED / "expected.txt"

# Bounded runs: the whole file stays well under 20 s on a busy 2-core machine. No deadline: a slow example on a
# loaded machine is not a failure (every input is small, and the loader is linear in it).
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- the invariant every outcome must satisfy


def assert_one_line(line: str, path: str) -> None:
    assert isinstance(line, str)
    # splitlines() also breaks on \x0b, \x0c, \x1c-\x1e, \x85, \u2028, \u2029: none of them may appear
    assert line.splitlines() == [line], line
    assert line.startswith(path), (line, path)
    assert "Traceback" not in line


def assert_outcome(result: LoadResult, path: str, *, whole_load: bool) -> None:
    """A configuration (routable) beside one-line errors; a file that is not YAML serves nothing.

    As in Emissary (config.py), an invalid Mapping invalidates itself only: the valid ones load beside it.
    """
    for line in result.errors + result.notices:
        assert_one_line(line, path)
    if result.file_errors:
        assert result.mappings == [] or not whole_load
        return
    for line in result.errors:  # the Mapping an error names is never among the loaded ones
        assert not any(line.startswith((m.source + " ", m.source + ":")) for m in result.mappings)
    table = routing.build_table(result.mappings)
    # Each Mapping serves, is ignored (ambassador_id), or is refused by its group with an error naming it.
    accounted = set(table.addresses) | {m.key for m in table.ignored} | {e.mapping for e in table.errors}
    assert accounted >= {m.key for m in result.mappings}
    # Every accepted Mapping is routable: a request aimed at it resolves (to it or a better match), no exception.
    for m in result.mappings[:8]:
        path_in = m.prefix if not m.prefix_regex else "/"
        for req_path in (path_in, path_in + "x?q=1", "/"):
            req = RequestView(m.method or "GET", req_path, "example.com", Headers())
            routing.resolve(table, req, 50.0, 50.0)


def load_text(text: str, path: str = "m.yaml") -> LoadResult:
    r = parse_text(text, path)
    mappings.check_duplicates(r)
    return r


# ---------------------------------------------------------------- strategies

FIELDS = sorted(mappings.HONOURED_FIELDS) + ["shaddow", "bypass_auth", "cors", "name", "namespace", "metadata"]
PATHS = ["/", "/a/", "/b/", "/api/v1/", "/u/[0-9]+", "(a+)+$", "/a/(", "", "/sp ace/", "/é/"]
SERVICES = [
    "svc",
    "svc:8080",
    "svc.ns",
    "http://svc",
    "https://svc:8443",
    "[::1]:81",
    "127.0.0.1:1",
    "ftp://x",
    "x:0",
    "x:99999",
    "x/path",
    "a b",
    "svc\r\nx",
    "",
]
ODD = [
    "GET",
    "*",
    "*.example.com",
    "yes",
    "true",
    "~",
    "&a",
    "*a",
    "\r\n",
    "a\u2028b",
    "\x00",
    "(?=x)",
    "\\1",
    "getambassador.io/v3alpha1",
    "ambassador/v1",
    "Mapping",
    "List",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 100, 101, -1, 2**31, 2**63, 2**64, 10**100]),
    st.floats(),  # nan and inf included
    st.text(max_size=24),
    st.sampled_from(PATHS + SERVICES + ODD),
)
KEYS = st.one_of(st.sampled_from(FIELDS), st.text(max_size=8), st.integers(-5, 5), st.booleans(), st.none())


def trees(leaves: st.SearchStrategy[Any] = SCALARS) -> st.SearchStrategy[Any]:
    return st.recursive(leaves, lambda c: st.lists(c, max_size=4) | st.dictionaries(KEYS, c, max_size=4), max_leaves=16)


VALUES = st.one_of(SCALARS, trees())
# Plausible specs (mostly valid, so tables get built) with a few random fields on top, and wholly random ones.
PLAUSIBLE_SPEC = st.builds(
    lambda base, extra: {**base, **extra},
    st.fixed_dictionaries(
        {"prefix": st.sampled_from(PATHS[:5]), "service": st.sampled_from(SERVICES[:7])},
        optional={
            "weight": st.integers(-5, 120),
            "shadow": st.booleans(),
            "precedence": st.integers(-3, 3),
            "prefix_regex": st.booleans(),
            "rewrite": st.sampled_from(["", "/", "/v1/", "/x y/"]),
            "method": st.sampled_from(["GET", "post", ""]),
            "headers": st.dictionaries(st.sampled_from(["x-a", "x-b"]), st.one_of(st.text(max_size=4), st.just(True))),
            "regex_headers": st.dictionaries(st.sampled_from(["x-a"]), st.sampled_from(["[a-z]+", "(", "a{2000}"])),
            "add_request_headers": st.dictionaries(
                st.sampled_from(["x-gen", "x y", ":path"]),
                st.one_of(
                    st.text(max_size=6),
                    st.fixed_dictionaries({"value": st.text(max_size=4)}, optional={"append": st.booleans()}),
                ),
            ),
            "regex_rewrite": st.fixed_dictionaries(
                {
                    "pattern": st.sampled_from(["^/a/(.*)$", "(", "/"]),
                    "substitution": st.sampled_from(["/\\1", "\\2", "\\n", "/x/", "\\\\"]),
                }
            ),
            "hostname": st.sampled_from(["*", "*.example.com", "example.*", "example.com"]),
            "host": st.sampled_from(["example.com", "[a-z]+\\.com", "("]),
            "host_regex": st.booleans(),
            "case_sensitive": st.booleans(),
            "timeout_ms": st.integers(-1, 2**32),
        },
    ),
    st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=1),
)
SPECS = st.one_of(PLAUSIBLE_SPEC, PLAUSIBLE_SPEC, st.dictionaries(KEYS, VALUES, max_size=6), SCALARS)
NAMES = st.one_of(st.sampled_from(["a", "b", "c"]), st.sampled_from(["a\nb", "x\u2028", "tab\t", "n\x85"]), SCALARS)
META = st.one_of(st.fixed_dictionaries({}, optional={"name": NAMES, "namespace": NAMES}), SCALARS)
API = st.one_of(st.sampled_from(sorted(mappings.MAPPING_API_VERSIONS)), VALUES)
KIND = st.one_of(st.just("Mapping"), st.just("Mapping"), st.sampled_from(["List", "Service", "Ma\npping"]), VALUES)
CRD_DOC = st.fixed_dictionaries({"apiVersion": API, "kind": KIND}, optional={"metadata": META, "spec": SPECS})
FLAT_DOC = st.builds(
    lambda api, name, spec: {
        "apiVersion": api,
        "kind": "Mapping",
        "name": name,
        **(spec if isinstance(spec, dict) else {}),
    },
    st.sampled_from(sorted(mappings.FLAT_API_VERSIONS)),
    NAMES,
    SPECS,
)
MAPPING_DOC = st.one_of(CRD_DOC, CRD_DOC, FLAT_DOC)
LIST_DOC = st.fixed_dictionaries(
    {
        "apiVersion": st.just("v1"),
        "kind": st.sampled_from(["List", "MappingList"]),
        "items": st.one_of(st.lists(st.one_of(MAPPING_DOC, SCALARS), max_size=3), SCALARS),
    }
)
DOCUMENTS = st.lists(st.one_of(MAPPING_DOC, MAPPING_DOC, LIST_DOC, VALUES), min_size=1, max_size=4)

# Pieces of YAML syntax: joined at random they reach the scanner's and parser's corners (anchors, tags, block
# scalars, flow collections, directives, tabs, BOM) far more often than uniform text does.
TOKENS = [
    "\n",
    "\n",
    " ",
    "  ",
    "\t",
    ": ",
    "- ",
    "-",
    "[",
    "]",
    "{",
    "}",
    ",",
    "? ",
    "&a ",
    "*a",
    "*b",
    "&b ",
    "!!int ",
    "!!str ",
    "!!binary ",
    "!!timestamp ",
    "!!set ",
    "!!omap ",
    "!!python/object ",
    "!foo ",
    "<<: ",
    "|",
    ">-",
    "'",
    '"',
    "\\",
    "\\x",
    "\\u00",
    "\\udcff",
    "#",
    "---",
    "...",
    "%YAML 1.1",
    "%TAG ! tag:x,1:",
    "\ufeff",
    "\x85",
    "\u2028",
    "\x00",
    "\x07",
    "prefix",
    "service",
    "weight",
    "kind: Mapping",
    "apiVersion: getambassador.io/v3alpha1",
    "metadata:",
    "name: a",
    "spec:",
    "/a/",
    "150",
    "0x1F",
    "1:20",
    "2001-02-30",
    "1e999",
    ".nan",
    "~",
    "yes",
    "0o17",
    "1_000",
]
SOUP = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)


def dump(docs: list[Any], style: str) -> str:
    if style == "json":
        return "\n---\n".join(json.dumps(d, default=str) for d in docs)
    return yaml.safe_dump_all(docs, default_flow_style=(style == "flow"), sort_keys=False, allow_unicode=True)


# ---------------------------------------------------------------- properties


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@PROPS
@given(data=st.binary(max_size=512))
def test_any_bytes_give_a_configuration_or_one_line_errors(workdir: Path, data: bytes) -> None:
    f = workdir / "bytes.yaml"
    f.write_bytes(data)
    assert_outcome(load_path(str(f)), str(f), whole_load=True)
    # The same bytes handed over as text by a caller that decoded them leniently (control characters, lone
    # surrogates from undecodable bytes): the text entry point must hold up as well.
    for text in (data.decode("latin-1"), data.decode("utf-8", "surrogateescape")):
        assert_outcome(load_text(text), "m.yaml", whole_load=False)


@PROPS
@given(text=st.text(max_size=300))
def test_any_text_gives_a_configuration_or_one_line_errors(text: str) -> None:
    assert_outcome(load_text(text), "m.yaml", whole_load=False)


@PROPS
@given(text=SOUP)
def test_yaml_token_soup_gives_a_configuration_or_one_line_errors(text: str) -> None:
    assert_outcome(load_text(text), "m.yaml", whole_load=False)


@PROPS
@given(docs=st.lists(VALUES, min_size=1, max_size=3), style=st.sampled_from(["block", "flow", "json"]))
def test_any_value_tree_gives_a_configuration_or_one_line_errors(docs: list[Any], style: str) -> None:
    assert_outcome(load_text(dump(docs, style)), "m.yaml", whole_load=False)


@settings(PROPS, max_examples=250)
@given(docs=DOCUMENTS, style=st.sampled_from(["block", "flow", "json"]))
def test_mapping_shaped_documents_give_a_configuration_or_one_line_errors(
    workdir: Path, docs: list[Any], style: str
) -> None:
    text = dump(docs, style)
    assert_outcome(load_text(text), "m.yaml", whole_load=False)
    # Through the file system too.
    f = workdir / "docs.yaml"
    f.write_text(text, encoding="utf-8")
    assert_outcome(load_path(str(f)), str(f), whole_load=True)


REGEX_ALPHABET = st.sampled_from(list("()[]{}|*+?.^$\\-,:=!<>PdswbAzaQE0129_/ ") + ["(?", "(?P<n>", "\\p{L}", "\n"])


@PROPS
@given(pattern=st.lists(REGEX_ALPHABET, max_size=24).map("".join), case_sensitive=st.booleans())
def test_hostile_prefix_regex_compiles_or_gives_one_line_error(pattern: str, case_sensitive: bool) -> None:
    spec = {"prefix": pattern, "prefix_regex": True, "case_sensitive": case_sensitive, "service": "s"}
    text = json.dumps(
        {"apiVersion": "getambassador.io/v3alpha1", "kind": "Mapping", "metadata": {"name": "rx"}, "spec": spec}
    )
    r = load_text(text)
    assert_outcome(r, "m.yaml", whole_load=False)
    if r.errors:
        assert r.errors[0].startswith("m.yaml doc 1 (Mapping rx.default): prefix ")
    else:
        table = routing.build_table(r.mappings)
        for path in ("/", "/" + "a" * 2000 + "!", "/x?y=" + "(" * 100):
            routing.resolve(table, RequestView("GET", path, "h", Headers()), 0.0, 0.0)


# ---------------------------------------------------------------- regular expressions cannot freeze the proxy


@pytest.mark.parametrize("pattern", ["/(a+)+$", "/(a|aa)*$", "/(a*)*b", "/(.*a){20}$", "/(x+x+)+y"])
def test_catastrophic_backtracking_patterns_resolve_a_long_adversarial_path(pattern: str) -> None:
    # Each of these takes exponential time in a backtracking engine on this path; RE2 is linear in its length.
    # There is no timing assertion: the call simply has to come back, with the right answer.
    r = load_text(
        json.dumps(
            {
                "apiVersion": "getambassador.io/v3alpha1",
                "kind": "Mapping",
                "metadata": {"name": "rx"},
                "spec": {"prefix": pattern, "prefix_regex": True, "service": "s"},
            }
        )
    )
    assert r.errors == []
    table = routing.build_table(r.mappings)
    hostile = "/" + "a" * 50_000 + "!"
    assert routing.resolve(table, RequestView("GET", hostile, "h", Headers()), 0.0, 0.0) is None
    matching = "/" + "a" * 50_000 + ("b" if pattern.endswith("b") else "")
    if pattern in ("/(a+)+$", "/(a|aa)*$", "/(a*)*b", "/(.*a){20}$"):
        route = routing.resolve(table, RequestView("GET", matching, "h", Headers()), 0.0, 0.0)
        assert route is not None and route.mapping is not None and route.mapping.name == "rx"


# ---------------------------------------------------------------- bounds: aliases, nesting, size


def laughs(levels: int = 9, width: int = 10) -> str:
    """A "billion laughs": 10**9 leaves if expanded, a few hundred bytes of text."""
    lines = ["x-lol0: &l0 lol"]
    for i in range(1, levels + 1):
        lines.append(f"x-lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (
            "spec:\n  prefix: *l9\n  service: s\n",
            "m.yaml doc 1 (Mapping bomb.default): prefix must be a string, got list "
            "[[[...], [...], [...], [...], ...], [[...], [...], [...], [...], ...], "
            "[[...], [...], [...], [...], ...], [[...], [...], [...], [...], ...], "
            "...]",
        ),
        (
            "spec:\n  prefix: /a/\n  service: s\n  headers: {x-a: *l9}\n",
            "m.yaml doc 1 (Mapping bomb.default): headers.x-a must be a string, got list [[[...], [...], [...], [...], "
            "...], [[...], [...], [...], [...], ...], [[...], [...], [...], [...], ...], [[...], [...], [...], [...], "
            "...], ...]",
        ),
        (
            "spec:\n  prefix: /a/\n  service: s\n  add_request_headers: *l9\n",
            "m.yaml doc 1 (Mapping bomb.default): add_request_headers must be a mapping of header: value, got list",
        ),
        (
            "spec:\n  prefix: /a/\n  service: s\n  remove_request_headers: *l9\n",
            "m.yaml doc 1 (Mapping bomb.default): remove_request_headers must be a list of header names",
        ),
        ("spec: *l9\n", "m.yaml doc 1 (Mapping bomb.default): spec must be a mapping, got list"),
    ],
)
def test_alias_bomb_is_never_expanded(where: str, expected: str) -> None:
    # The `x-lol` keys sit in the document root, where unknown keys are not looked at, so only the use counts.
    text = laughs() + "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: bomb}\n" + where
    assert load_text(text).errors == [expected]


def test_alias_bombs_in_names_kinds_and_api_versions_are_refused_in_one_line() -> None:
    head = laughs() + "kind: Mapping\n"
    r = load_text(laughs() + "kind: *l9\n")
    assert r.errors == [
        "m.yaml doc 1: kind is required (e.g. kind: Mapping), got list [[[...], [...], [...], [...], "
        "...], [[...], [...], [...], [...], ...], [[...], [...], [...], [...], ...], [[...], [...], "
        "[...], [...], ...], ...]"
    ]
    r = load_text(head + "apiVersion: *l9\n")
    assert len(r.errors) == 1 and r.errors[0].startswith("m.yaml doc 1: apiVersion must be one of")
    r = load_text(head + "apiVersion: getambassador.io/v3alpha1\nmetadata: {name: *l9}\nspec: {}\n")
    assert r.errors == ["m.yaml doc 1: metadata.name is required and must be a string"]


def test_self_referencing_alias_and_merge_key_bomb_are_bounded() -> None:
    r = load_text(
        "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: r}\n"
        "spec: &s {prefix: /a/, service: s, cors: *s}\n"
    )
    assert r.errors == [] and r.mappings[0].ignored_fields == ("cors",)
    # Merge keys (`<<`) copying a mapping ten times per level, nine levels deep: merged once, never multiplied.
    lines = ["x-m0: &m0 {k: v}"] + [f"x-m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 10)}]}}" for i in range(1, 10)]
    text = "\n".join(lines) + "\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: m}\n"
    r = load_text(text + "spec: {<<: *m9, prefix: /a/, service: s}\n")
    assert r.errors == ["m.yaml doc 1 (Mapping m.default): unknown field 'k'"]


def test_merged_keys_may_be_overridden_but_written_keys_may_not_repeat() -> None:
    # The overriding mapping is merged elsewhere before its own turn comes: still no duplicate.
    base = "x-base: &base {prefix: /a/, service: s}\nx: {inner: &d {<<: *base, service: t}}\n"
    head = "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: m}\n"
    r = load_text(base + head + "spec: {<<: *d}\n")
    assert r.errors == [] and (r.mappings[0].prefix, r.mappings[0].service) == ("/a/", "t")
    r = load_text(head + "spec:\n  prefix: /a/\n  service: s\n  shadow: true\n  weight: 10\n  shadow: false\n")
    assert r.errors == ["m.yaml doc 1: YAML syntax error at line 9 column 3: duplicate key 'shadow'"]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: " + "[" * 10_000 + "]" * 10_000 + "\n", 1),
        ("a: " + "{b: " * 10_000 + "c" + "}" * 10_000 + "\n", 1),
        ("".join("  " * i + "- \n" for i in range(200)), 65),
    ],
)
def test_deep_nesting_is_refused_at_the_limit(text: str, line: int) -> None:
    errors = load_text(text).errors
    assert len(errors) == 1
    assert re.fullmatch(
        rf"m\.yaml doc 1: YAML nests deeper than {mappings.MAX_DEPTH} levels at line {line} column \d+", errors[0]
    ), errors


def test_nesting_up_to_the_limit_is_read_and_one_more_level_is_not() -> None:
    # The document's own mapping is the first level; then n nested lists.
    def nested(n: int) -> str:
        return "a: " + "[" * n + "]" * n + "\n"

    assert load_text(nested(mappings.MAX_DEPTH - 1)).errors == ["m.yaml doc 1: kind is required (e.g. kind: Mapping)"]
    last_bracket = len("a: ") + mappings.MAX_DEPTH
    assert load_text(nested(mappings.MAX_DEPTH)).errors == [
        f"m.yaml doc 1: YAML nests deeper than {mappings.MAX_DEPTH} levels at line 1 column {last_bracket}"
    ]


def test_file_over_the_size_limit_is_refused_without_reading_it(tmp_path: Path) -> None:
    f = tmp_path / "huge.yaml"
    with open(f, "wb") as fh:
        fh.truncate(mappings.MAX_FILE_BYTES + 1)  # sparse: no disk, and no time, spent
    assert load_path(str(f)).errors == [
        f"{f}: larger than 4 MiB ({mappings.MAX_FILE_BYTES + 1} bytes); split the Mappings into several files in a "
        "directory"
    ]
    assert load_text("#" * (mappings.MAX_FILE_BYTES + 1)).errors == [
        f"m.yaml: larger than 4 MiB ({mappings.MAX_FILE_BYTES + 1} characters); split the Mappings into several "
        "files in a directory"
    ]


def test_node_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real limit takes seconds of reading to reach; the rule is the same at a smaller one.
    monkeypatch.setattr(mappings.yamlreader, "MAX_NODES", 50)
    doc = "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: a}\nspec: {prefix: /a/, service: s}\n"
    assert load_text(doc).errors == []
    # Node 51 is the list's 50th element: column 2 + 49 * len("1, ")
    assert load_text("[" + ", ".join(["1"] * 60) + "]\n").errors == [
        "m.yaml doc 1: YAML has more than 50 nodes in one file at line 1 column 149"
    ]


# ---------------------------------------------------------------- values that would corrupt an HTTP message


def crd(spec: str, name: str = "w") -> str:
    return f"apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: {name}}}\nspec: {{{spec}}}\n"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            'prefix: /a/, service: s, add_request_headers: {x-a: "v\\r\\nInjected: 1"}',
            "add_request_headers.x-a must not contain CR, LF or NUL, got 'v\\r\\nInjected: 1'",
        ),
        (
            'prefix: /a/, service: s, add_response_headers: {x-a: {value: "v\\nx"}}',
            "add_response_headers.x-a.value must not contain CR, LF or NUL, got 'v\\nx'",
        ),
        (
            'prefix: /a/, service: s, add_request_headers: {"x a": v}',
            "add_request_headers has an invalid header name 'x a'",
        ),
        (
            'prefix: /a/, service: s, add_request_headers: {":path": /x}',
            "add_request_headers has an invalid header name ':path'",
        ),
        (
            "prefix: /a/, service: s, add_request_headers: {x-a: {value: v, apend: false}}",
            "add_request_headers.x-a has an unknown key 'apend' (expected value, append)",
        ),
        (
            'prefix: /a/, service: s, rewrite: "/x HTTP/1.1\\r\\nEvil: 1"',
            "rewrite must not contain whitespace or control characters, got '/x HTTP/1.1\\r\\nEvil: 1'",
        ),
        (
            'prefix: /a/, service: s, host_rewrite: "h\\r\\nx: y"',
            "host_rewrite must not contain whitespace or control characters, got 'h\\r\\nx: y'",
        ),
        ('prefix: /a/, service: "svc\\r\\nx"', "service must be [scheme://]host[:port], got 'svc\\r\\nx'"),
        ('prefix: /a/, service: "my svc"', "service must be [scheme://]host[:port], got 'my svc'"),
        ("prefix: /a/, service: 'x:٨٠'", "service port must be 1..65535, got '٨٠'"),
        ("prefix: /a/, service: 'x:²'", "service port must be 1..65535, got '²'"),
        (
            'prefix: /a/, service: s, regex_rewrite: {pattern: "/a/(.*)", substitution: "/\\\\n"}',
            "regex_rewrite.substitution: a backslash must be followed by a group digit or a backslash, got '\\\\n'",
        ),
        (
            'prefix: /a/, service: s, regex_rewrite: {pattern: "/a/(.*)", substitution: "/\\\\2"}',
            "regex_rewrite.substitution refers to group \\2, but the pattern has 1 group(s)",
        ),
        (
            'prefix: /a/, service: s, regex_rewrite: {pattern: "/a/", substitution: "/", substition: "/b"}',
            "regex_rewrite has an unknown key 'substition' (expected pattern, substitution)",
        ),
        (
            "prefix: /a/, service: s, timeout_ms: 99999999999",
            "timeout_ms must be at most 2147483647 (milliseconds), got 99999999999",
        ),
        (
            'prefix: "/a/\\n(", prefix_regex: true, service: s',
            "prefix is not a valid RE2 regular expression '/a/\\n(': missing ): /a/\\n(",
        ),
    ],
)
def test_values_that_would_split_a_request_are_refused(spec: str, message: str) -> None:
    assert load_text(crd(spec)).errors == [f"m.yaml doc 1 (Mapping w.default): {message}"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            'apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: "a\\u2028b"}\nspec: {}\n',
            "m.yaml doc 1: metadata.name must be printable text, got 'a\\u2028b'",
        ),
        (
            'apiVersion: ambassador/v1\nkind: Mapping\nname: "a\\x1bb"\nprefix: /a/\nservice: s\n',
            "m.yaml doc 1: name must be printable text, got 'a\\x1bb'",
        ),
        (
            'apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: a, namespace: "n\\n"}\nspec: {}\n',
            "m.yaml doc 1 (Mapping a): namespace must be a non-empty printable string",
        ),
        ('kind: "Serv\\nice"\n', None),
        (
            'apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: "\\udcff"}\n',
            "m.yaml doc 1: YAML syntax error at line 3 column 18: not a Unicode character in '\\udcff'",
        ),
        (
            "a: 1\nb: \x00\n",
            "m.yaml: YAML syntax error at line 2 column 4: unacceptable character #x0000: special "
            "characters are not allowed",
        ),
        (
            "weight: !!int ''\n",
            "m.yaml doc 1: YAML syntax error at line 1 column 9: invalid int '': string index out of range",
        ),
        (
            "weight: 0x" + "f" * 200 + "\n",
            "m.yaml doc 1: YAML syntax error at line 1 column 9: integer too large: "
            "'0xfffffffffffffffffffffffffffffffffff...ffffffffffffffffffffffffffffffffffffff'",
        ),
        (
            "weight: " + "1:" * 60 + "1\n",
            "m.yaml doc 1: YAML syntax error at line 1 column 9: integer too large: "
            "'1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1...:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1'",
        ),
        (
            "when: 2001-02-30\n",
            "m.yaml doc 1: YAML syntax error at line 1 column 7: invalid timestamp '2001-02-30': "
            "day is out of range for month",
        ),
        ("ok: !!bool maybe\n", "m.yaml doc 1: YAML syntax error at line 1 column 5: invalid bool 'maybe': 'maybe'"),
        ("a: 1\na: 2\n", "m.yaml doc 1: YAML syntax error at line 2 column 1: duplicate key 'a'"),
        (
            "apiVersion: [getambassador.io/v3alpha1]\nkind: Mapping\n",
            "m.yaml doc 1: apiVersion must be one of getambassador.io/v3alpha1, v2, v1 or ambassador/v0, v1; got "
            "['getambassador.io/v3alpha1']",
        ),
        (
            "kind: {name: Mapping}\n",
            "m.yaml doc 1: kind is required (e.g. kind: Mapping), got dict {'name': 'Mapping'}",
        ),
    ],
)
def test_control_characters_and_odd_scalars_stay_on_one_line(text: str, error: str | None) -> None:
    r = load_text(text)
    if error is None:  # a skipped kind is a notice, escaped like an error
        assert r.errors == [] and r.notices == ["m.yaml doc 1: skipped kind Serv\\nice (only Mappings are used)"]
    else:
        assert r.errors == [error]


def test_messages_escape_the_path_too(tmp_path: Path) -> None:
    d = tmp_path / "odd\nname"
    d.mkdir()
    (d / "m.yaml").write_text("a: [\n")
    errors = load_path(str(d)).errors
    assert errors == [
        f"{tmp_path}/odd\\nname/m.yaml doc 1: YAML syntax error at line 2 column 1: expected the node "
        "content, but found '<stream end>'"
    ]


# ---------------------------------------------------------------- all or nothing, and half-written files


def test_hidden_files_in_a_directory_are_not_loaded(tmp_path: Path) -> None:
    # e.g. a writer's temporary copy, half-written, waiting to be renamed over a.yaml
    (tmp_path / "a.yaml").write_text(crd("prefix: /a/, service: s", "a"))
    (tmp_path / ".a.yaml").write_text(crd("prefix: /a/, serv", "a"))
    r = load_path(str(tmp_path))
    assert r.errors == [] and r.files == [str(tmp_path / "a.yaml")]


def test_an_invalid_mapping_invalidates_itself_only(tmp_path: Path) -> None:
    """Emissary config.py / fetch/resource.py: a resource with errors is left out, the others serve;
    `mappings_strict` (blocking(strict=True)) turns any error into a failed load, and a file that is not YAML is
    always a file-level error."""
    (tmp_path / "a.yaml").write_text(crd("prefix: /a/, service: s", "a"))
    (tmp_path / "b.yaml").write_text(crd("prefix: /b/, service: s", "b") + "---\n" + crd("prefix: /c/", "c"))
    r = load_path(str(tmp_path))
    err = f"{tmp_path}/b.yaml doc 2 (Mapping c.default): service is required"
    assert r.errors == [err] and r.blocking() == [] and r.blocking(strict=True) == [err]
    assert [m.name for m in r.mappings] == ["a", "b"]
    (tmp_path / "c.yaml").write_text("kind: Mapping\nspec: {prefix: [/a/\n")
    r = load_path(str(tmp_path))
    assert len(r.blocking()) == 1 and r.blocking()[0].startswith(f"{tmp_path}/c.yaml doc 1: YAML syntax error")


FLOW_DOC = json.dumps(
    {
        "apiVersion": "getambassador.io/v3alpha1",
        "kind": "Mapping",
        "metadata": {"name": "a", "namespace": "default"},
        "spec": {"prefix": "/a/", "service": "svc-0042", "add_request_headers": {"x-gen": "0042"}},
    }
)
BLOCK_DOCS = "---\n".join(
    f"apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata:\n  name: {n}\nspec:\n  prefix: /{n}/\n"
    "  service: svc-0042\n"
    for n in "ab"
)


def test_every_cut_of_a_one_document_flow_file_is_an_error() -> None:
    # What a reader sees while a writer is part-way through: any strict, non-empty prefix of a single flow-style
    # document is unclosed, so a reload of it fails and the previous configuration keeps serving.
    for n in range(1, len(FLOW_DOC)):
        r = load_text(FLOW_DOC[:n])
        assert len(r.errors) == 1 and r.mappings == [], (n, r.errors)
    assert load_text(FLOW_DOC).errors == []


def test_cuts_of_block_style_files_can_read_as_a_different_valid_configuration() -> None:
    # The limit of any loader that reads a file as it is: a file cut at a document boundary, or inside a plain
    # scalar, is valid YAML. An empty file is valid (no Mappings). This is why writers should rename into place.
    outcomes = {n: load_text(BLOCK_DOCS[:n]) for n in range(len(BLOCK_DOCS))}
    clean = {n: sorted((m.name, m.service) for m in r.mappings) for n, r in outcomes.items() if not r.errors}
    assert clean[0] == []  # empty: no Mappings, and no error
    assert [("a", "svc-0042")] in clean.values()  # second document lost without a word
    assert [("a", "svc-00")] in clean.values()  # a service name cut short
    assert all(len(r.errors) == 1 for r in outcomes.values() if r.errors)


# ---------------------------------------------------------------- the malformed corpus


def expectations() -> dict[str, str]:
    """expected.txt: one line per malformed file, exactly the error for it (the path as passed, relative)."""
    out: dict[str, str] = {}
    for line in EXPECTED.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        path = re.match(r"(tests/malformed/[^ :]+)", line)
        assert path is not None, line
        assert path.group(1) not in out, f"two expectations for {path.group(1)}"
        out[path.group(1)] = line
    return out


CORPUS = sorted(p.name for p in MALFORMED.iterdir() if p.name != EXPECTED.name)


def test_corpus_and_expectations_match_one_to_one() -> None:
    assert len(CORPUS) >= 20
    assert sorted(expectations()) == [f"tests/malformed/{n}" for n in CORPUS]


@pytest.mark.parametrize("name", CORPUS)
def test_malformed_file_gives_exactly_its_expected_line(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # paths are shown as passed: relative to the repository root here
    rel = f"tests/malformed/{name}"
    r = load_path(rel)
    assert r.errors == [expectations()[rel]]
    assert_outcome(r, rel, whole_load=True)


@pytest.mark.e2e
def test_mitmdump_refuses_to_start_on_a_malformed_file_with_exactly_that_line() -> None:
    rel = "tests/malformed/timestamp-invalid.yaml"  # a case that used to escape the loader as a ValueError
    r = run_process(
        [
            str(MITMDUMP),
            "-s",
            str(ADDON),
            "--mode",
            "reverse:http://127.0.0.1:9",
            "--listen-host",
            "127.0.0.1",
            "-p",
            str(free_port()),
            "--set",
            f"mappings={rel}",
            "--set",
            "shadow_admin=",
        ],
        60,
        cwd=ROOT,
    )
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    # mitmdump prefixes each log line with its time: "[12:34:56.789] message"
    lines = [re.sub(r"^\[\d\d:\d\d:\d\d\.\d{3}\] ", "", line) for line in out.splitlines()]
    assert expectations()[rel] in lines, out
    assert "Traceback" not in out
