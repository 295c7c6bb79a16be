"""Judgement per endpoint and field, endpoint names, the secondary's plumbing: plain data, no I/O."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadow_addon import secondary
from shadow_addon.budget import MemoryBudget
from shadow_addon.compare import CompareConfig, Comparison, Difference, Reply, compare, request_key
from shadow_addon.compare import endpoints as endpoints_module
from shadow_addon.compare.endpoints import MANY, EndpointNamer, caller, parse_patterns
from shadow_addon.compare.judge import (
    HINT_NO_SECONDARY,
    HINT_SECONDARY,
    OTHER,
    OTHER_FIELDS,
    PROVISIONAL_BELOW,
    UNLISTED,
    CountingLearner,
    EndpointCounts,
    FieldCounts,
    Judge,
    JudgeConfig,
    fields_of,
    verdict,
)
from shadow_addon.compare.pairing import Pairing
from shadow_addon.mappings import Address, Mapping
from shadow_addon.metrics import Metrics
from shadow_addon.sender import Copy, Outcome

JSON = [("Content-Type", "application/json")]


def js(doc: Any, status: int = 200) -> Reply:
    return Reply.of(status, JSON, json.dumps(doc).encode())


def mismatch(*lines: str, noisy: tuple[str, ...] = ()) -> Comparison:
    """A mismatch as `compare` makes one: a diff line and a Difference per field (`/price: 10 -> 12`)."""
    fields = [Difference(line.split(": ", 1)[0], "value") for line in lines]
    fields += [Difference(n, "value", noise=True) for n in noisy]
    return Comparison("mismatch", frozenset({"body"}), list(lines), list(noisy), tuple(fields))


def in_noise(*names: str) -> Comparison:
    """A pair that differed only in fields of learned noise, as `compare` makes it."""
    return Comparison("noise", noisy=list(names), differences=tuple(Difference(n, "value", noise=True) for n in names))


def fields(judge: Judge, endpoint: str = "GET /a") -> dict[str, dict[str, Any]]:
    [e] = [e for e in judge.to_json() if e["endpoint"] == endpoint]
    return {f["field"]: f for f in e["fields"]}


# ------------------------------------------------------------------------------------------ thresholds


@pytest.mark.parametrize(
    ("compared", "candidate", "samples", "noise", "reported"),
    [
        (100, 10, 100, 9, False),  # 1 % above noise, but only 10 % of its own rate: under the relative 20 %
        (100, 10, 100, 7, True),  # 30 % relative, 3 % absolute
        (10_000, 2, 10_000, 0, False),  # 0.02 % of the pairs: under the absolute 0.03 %
        (10_000, 4, 10_000, 0, True),  # 0.04 %
        (10, 10, 10, 10, False),  # differs as often as production differs from itself
        (10, 0, 10, 3, False),  # never differed with the candidate
        (10, 10, 0, 0, True),  # no noise measured: every difference counts
    ],
)
def test_a_field_is_reported_past_both_thresholds(
    compared: int, candidate: int, samples: int, noise: int, reported: bool
) -> None:
    e = EndpointCounts(compared=compared, samples=samples)
    v = verdict(e, FieldCounts(candidate, noise), JudgeConfig())
    assert v["reported"] is reported
    assert v["rate"] == candidate / compared and v["noise_rate"] == (noise / samples if samples else 0.0)


def test_thresholds_are_options() -> None:
    e = EndpointCounts(compared=100, samples=100)
    f = FieldCounts(10, 9)
    assert not verdict(e, f, JudgeConfig())["reported"]
    assert verdict(e, f, JudgeConfig(relative=5.0))["reported"]
    assert not verdict(e, f, JudgeConfig(relative=5.0, absolute=2.0))["reported"]


# ------------------------------------------------------------------------------------------ field names


def test_fields_of_names_each_difference_once_generalised() -> None:
    c = Comparison(
        "mismatch",
        frozenset({"body", "status", "header"}),
        differences=(
            Difference("status", "status"),
            Difference("header content-type", "header"),
            Difference("/items/0/ts", "value"),
            Difference("/items/1/ts", "value"),
            Difference("/meta/at", "value", noise=True),
        ),
        more_fields=11,  # past the comparison's field limit: 9 outside noise, 2 in it
        more_noise=2,
    )
    assert fields_of(c) == (["status", "header content-type", "/items/*/ts", UNLISTED], ["/meta/at", UNLISTED])


def test_field_names_from_the_diff_and_from_the_learner_agree() -> None:
    """A noise sample from production repeating itself and a candidate difference name a field alike."""
    learner = CountingLearner()
    key = request_key("GET", "/a", b"")
    first, second = js({"items": [{"ts": 1, "id": 1}]}), js({"items": [{"ts": 2, "id": 1}]})
    assert learner.sample("m", key, first) is None  # nothing to compare with yet
    assert learner.sample("m", key, js({"items": [{"ts": 1, "id": 1}]})) == []  # the same bytes: a quiet sample
    changed = learner.sample("m", key, second)
    listed, _ = fields_of(compare(first, second, CompareConfig()))
    assert changed == listed == ["/items/*/ts"]
    assert learner.noise("m").covers(("items", "0", "ts"))  # and it still learns as the plain learner does


def sample_and_diff(a: Any, b: Any) -> tuple[list[str] | None, list[str]]:
    """The fields production changed between two answers `a` then `b` (a noise sample), and those a comparison of
    the same two answers lists."""
    learner = CountingLearner()
    key = request_key("GET", "/a", b"")
    learner.sample("m", key, js(a))
    listed, _ = fields_of(compare(js(a), js(b), CompareConfig()))
    return learner.sample("m", key, js(b)), listed


@pytest.mark.parametrize(
    ("a", "b", "fields"),
    [
        ({"items": [1, 2]}, {"items": [1, 2, 3]}, ["/items"]),  # array length
        ({"items": [{"id": 1}, {"id": 2}]}, {"items": [{"id": 1}]}, ["/items"]),
        ({"tags": ["x", "y"]}, {"tags": ["y", "x"]}, ["/tags"]),  # order only
        ({"tags": ["x", "y"]}, {"tags": ["y", "y"]}, ["/tags/*"]),
        ({"tags": [1, 2], "n": 1}, {"tags": [2, 1, 3], "n": 2}, ["/n", "/tags", "/tags/*"]),
        ({"a": {"b": {"c": 1}}}, {"a": [{"c": 2}]}, ["/a"]),  # another kind: what is beneath is not named
        ({"0": {"x": 1}}, [{"x": 2}], ["(root)"]),
        ({"v": 1, "t": 1}, {"v": True, "t": "1"}, ["/t", "/v"]),
        ({"gone": 1, "o": {}}, {"new": {"x": [1]}, "o": {"k": 1}}, ["/gone", "/new", "/o/k"]),
        ([[1, 2], {"a": 1}], [[2, 1], {"a": 1}], ["/*"]),  # the inner array, reordered
    ],
)
def test_a_noise_sample_names_fields_as_the_diff_does(a: Any, b: Any, fields: list[str]) -> None:
    """Production's own change and a comparison name the same fields, so that their rates are of one field."""
    sample, listed = sample_and_diff(a, b)
    assert sorted(sample or []) == sorted(listed) == fields


_keys = st.sampled_from(["a", "b", "0", "1", "a/b", "~"])
_docs = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from(["x", "y", "1", 1.0, 0.5, -0.0]),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(_keys, kids, max_size=4),
    max_leaves=16,
)


def _mutated(doc: Any, data: Any) -> Any:
    """`doc` with one change somewhere: a value replaced, a key or an element added or removed, an array
    reversed."""
    if isinstance(doc, dict | list) and doc and data.draw(st.booleans()):
        k = data.draw(st.sampled_from(list(doc) if isinstance(doc, dict) else range(len(doc))))
        out = dict(doc) if isinstance(doc, dict) else list(doc)
        out[k] = _mutated(doc[k], data)  # type: ignore[index]
        return out
    how = data.draw(st.sampled_from(["replace", "add", "remove", "reverse"]))
    if how == "add" and isinstance(doc, dict):
        return {**doc, data.draw(_keys): data.draw(_docs)}
    if how == "add" and isinstance(doc, list):
        return [*doc, data.draw(_docs)]
    if how == "remove" and isinstance(doc, dict | list) and doc:
        return dict(list(doc.items())[1:]) if isinstance(doc, dict) else doc[1:]
    if how == "reverse" and isinstance(doc, list):
        return doc[::-1]
    return data.draw(_docs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_docs, st.data())
def test_noise_samples_and_comparisons_name_the_same_fields(doc: Any, data: Any) -> None:
    other = _mutated(_mutated(doc, data), data)
    sample, listed = sample_and_diff(doc, other)
    if json.dumps(doc) == json.dumps(other):
        assert sample == [] and listed == []
    else:
        assert sample is not None and sorted(sample) == sorted(listed), (doc, other)


def test_learner_names_headers_status_and_keys_with_slashes() -> None:
    learner = CountingLearner(headers=("content-type",))
    key = request_key("GET", "/a", b"")
    learner.sample("m", key, Reply.of(200, JSON, json.dumps({"a/b": 1, "~": 1}).encode()))
    changed = learner.sample(
        "m", key, Reply.of(200, [("content-type", "application/json; charset=utf-8")], b'{"a/b": 2, "~": 2}')
    )
    assert sorted(changed or []) == ["/a~1b", "/~0", "header content-type"]
    assert learner.sample("m", key, js({}, status=404)) == ["status"]
    assert learner.sample("m", key, js({}, status=503)) is None  # a failure is not noise


# ------------------------------------------------------------------------------------------ the judge


def test_a_field_the_secondary_differs_in_is_noise_from_the_first_pair() -> None:
    judge = Judge(JudgeConfig(secondary=True))
    judge.noise("m", "GET /a", ["/ts"])
    out = judge.candidate("m", "GET /a", mismatch("/ts: 1 -> 2"))
    assert out.result == "noise" and out.diffs == [] and out.noisy == ["/ts"] and out.kinds == frozenset()
    judge.noise("m", "GET /a", ["/ts"])
    out = judge.candidate("m", "GET /a", mismatch("/ts: 3 -> 4", "/price: 10 -> 12"))
    assert out.result == "mismatch"  # the candidate-only field decides
    f = fields(judge)
    assert f["/price"]["reported"] and not f["/ts"]["reported"]
    assert (f["/ts"]["candidate"], f["/ts"]["noise"], f["/price"]["candidate"], f["/price"]["noise"]) == (2, 2, 1, 0)
    [e] = judge.to_json()
    assert (e["compared"], e["noise_samples"], e["reported"]) == (2, 2, 1)
    assert [r["field"] for r in e["fields"]] == ["/price", "/ts"]  # reported first


def test_noise_is_rejudged_as_data_arrives() -> None:
    """A field that varied in production once is not noise for good: once it varies far more with the candidate
    than production's version varies by itself, it is reported."""
    judge = Judge()
    judge.noise("m", "GET /a", ["/total"])  # production answered differently once
    assert judge.candidate("m", "GET /a", mismatch("/total: 1 -> 2")).result == "noise"
    for _ in range(9):
        judge.noise("m", "GET /a", [])  # then the same, again and again
        judge.candidate("m", "GET /a", mismatch("/total: 1 -> 2"))
    assert fields(judge)["/total"]["reported"]
    assert judge.candidate("m", "GET /a", mismatch("/total: 1 -> 2")).result == "mismatch"


def test_a_field_in_learned_noise_is_a_mismatch_again_once_it_differs_far_more_than_noise() -> None:
    judge = Judge()
    judge.noise("m", "GET /a", ["/ts", "/seq"])  # production answered a request again: both fields changed
    first = judge.candidate("m", "GET /a", in_noise("/ts", "/seq"))
    assert first.result == "noise"  # as often as production's own: noise
    for _ in range(4):
        judge.noise("m", "GET /a", ["/seq"])  # then production's /ts stays put, its /seq keeps changing
        c = judge.candidate("m", "GET /a", in_noise("/ts", "/seq"))
    assert c.result == "mismatch" and c.kinds == frozenset({"body"})
    assert c.diffs == ["/ts: differs in 100 % of pairs, production's version in 20 %"] and c.noisy == ["/seq"]
    assert fields(judge)["/ts"]["reported"] and not fields(judge)["/seq"]["reported"]


def test_skipped_pairs_and_matches() -> None:
    judge = Judge()
    assert judge.candidate("m", "GET /a", Comparison("skipped", diffs=["skipped: x"])).result == "skipped"
    assert judge.to_json() == []
    assert judge.candidate("m", "GET /a", Comparison("match")).result == "match"
    assert judge.to_json()[0]["compared"] == 1 and judge.to_json()[0]["fields"] == []


def test_without_a_secondary_early_results_are_provisional_with_a_hint() -> None:
    judge = Judge()
    judge.candidate("m", "POST /orders", mismatch("/id: 1 -> 2"))
    [e] = judge.to_json()
    assert e["provisional"] and e["hint"] == HINT_NO_SECONDARY and "shadow_compare_secondary" in e["hint"]
    assert "shadow_compare_ignore" in e["hint"]
    for _ in range(PROVISIONAL_BELOW):
        judge.noise("m", "POST /orders", [])
    [e] = judge.to_json()
    assert not e["provisional"] and e["hint"] == ""
    waiting = Judge(JudgeConfig(secondary=True))
    waiting.candidate("m", "GET /a", mismatch("/x: 1 -> 2"))
    assert waiting.to_json()[0]["hint"] == HINT_SECONDARY


def test_endpoints_and_fields_are_capped() -> None:
    judge = Judge(max_endpoints=2, max_fields=3)
    for i in range(5):
        judge.candidate("m", f"GET /e{i}", mismatch("/x: 1 -> 2"))
    judge.candidate("n", "GET /e9", mismatch("/x: 1 -> 2"))  # the cap is per shadow Mapping
    names = sorted((e["mapping"], e["endpoint"], e["compared"]) for e in judge.to_json())
    assert names == [("m", OTHER, 3), ("m", "GET /e0", 1), ("m", "GET /e1", 1), ("n", "GET /e9", 1)]
    judge.candidate("m", "GET /e0", mismatch(*(f"/f{i}: 1 -> 2" for i in range(10))))
    f = fields(judge, "GET /e0")
    assert set(f) == {"/x", "/f0", "/f1", OTHER_FIELDS} and f[OTHER_FIELDS]["candidate"] == 1
    assert [e["endpoint"] for e in judge.to_json(shown=1)] == ["GET /e0"]  # the most reported fields first
    assert judge.summary()["tracked"] == 4


def test_what_the_judge_holds_is_in_the_memory_budget() -> None:
    budget = MemoryBudget(10_000)
    judge = Judge(budget=budget)
    judge.candidate("m", "GET /a", mismatch("/x: 1 -> 2"))
    assert budget.held == judge.held > 0
    budget.limit = budget.held  # full: nothing new is tracked, and that is counted
    c = mismatch("/y: 1 -> 2")
    assert judge.candidate("m", "GET /a", c) is c  # a field it could not count is not re-judged
    judge.candidate("m", "GET /b", mismatch("/x: 1 -> 2"))
    assert judge.untracked == 2 and [e["endpoint"] for e in judge.to_json()] == ["GET /a"]
    judge.close()
    assert budget.held == 0 and judge.to_json() == []


def test_many_fields_cost_at_most_the_cap_each() -> None:
    """Ten times more differing fields than tracked: memory stays at the cap."""
    budget = MemoryBudget(10**9)
    judge = Judge(budget=budget, max_fields=64)
    for i in range(100):
        judge.candidate("m", "GET /a", mismatch(*(f"/k{i}_{j}: 1 -> 2" for j in range(20))))
    counts = judge.endpoints[("m", "GET /a")].fields
    assert len(counts) == 64 + 1 and counts[OTHER_FIELDS].candidate == 97  # once per pair from the 4th on
    assert budget.held < 64 * 300 + 1000


# ------------------------------------------------------------------------------------------ pairing, three ways


def test_pairing_waits_for_the_secondary_and_judges_with_it() -> None:
    metrics = Metrics()
    p = Pairing(metrics, CompareConfig(), judge=JudgeConfig(secondary=True))
    for i, cand in enumerate([{"ts": 2, "price": 10}, {"ts": 3, "price": 12}]):
        key = f"k{i}"
        p.expect(key, "m", "GET /a", {"method": "GET", "path": "/a"}, secondary=True)
        p.production(key, js({"ts": 1, "price": 10}))
        p.shadow(key, js(cand), None)
        assert key in p.pairs  # the secondary has not answered: not compared yet
        p.secondary(key, js({"ts": 9, "price": 10}))
        assert key not in p.pairs
    assert metrics.compare_counts() == {"m": {"mismatch": 1, "noise": 1}}
    doc = p.store.to_json()
    [e] = doc["judgement"]["endpoints"]
    f = {r["field"]: r for r in e["fields"]}
    assert f["/price"]["reported"] and not f["/ts"]["reported"] and e["noise_samples"] == 2
    assert doc["records"][0]["diffs"] == ["/ts: 1 -> 3", "/price: 10 -> 12"]


def test_no_secondary_copy_for_a_pair_whose_shadow_copy_failed_at_once() -> None:
    metrics = Metrics()
    p = Pairing(metrics, CompareConfig(), judge=JudgeConfig(secondary=True))
    p.expect("k", "m", "GET /a", {}, secondary=True)
    assert p.secondary_wanted("k")
    p.shadow("k", None, "overload")  # dropped by the sender as it was handed over
    assert not p.secondary_wanted("k")
    p.production("k", js({}))
    assert metrics.compare_counts() == {"m": {"skipped": 1}} and not p.pairs
    assert not p.secondary_wanted("gone")


def test_a_failed_secondary_leaves_the_pair_judged_without_noise() -> None:
    metrics = Metrics()
    p = Pairing(metrics, CompareConfig(), judge=JudgeConfig(secondary=True))
    p.expect("k", "m", "GET /a", {}, secondary=True)
    p.production("k", js({"ts": 1}))
    p.shadow("k", js({"ts": 2}), None)
    p.secondary_answered("k", Outcome(reason="timeout"))
    assert metrics.compare_counts() == {"m": {"mismatch": 1}}
    assert p.store.to_json()["judgement"]["endpoints"][0]["noise_samples"] == 0


# ------------------------------------------------------------------------------------------ endpoint names


class H(dict[str, str]):
    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(key.lower(), default)


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:secret".encode()).decode()


def jwt(claims: dict[str, Any]) -> str:
    part = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"Bearer eyJhbGciOiJub25lIn0.{part}.sig"


def test_the_callers_own_name_in_the_path_is_a_user_segment() -> None:
    n = EndpointNamer()
    assert n.name("GET", "/cart/bob", H(authorization=basic("bob"))) == "GET /cart/{user}"
    assert n.name("GET", "/cart/alice", H(authorization=basic("alice"))) == "GET /cart/{user}"
    assert n.name("get", "/users/alice/orders/17", H(authorization=jwt({"sub": "alice"}))) == (
        "GET /users/{user}/orders/{id}"
    )
    assert n.name("GET", "/u/carol", H(authorization=jwt({"email": "carol@example.com"}))) == "GET /u/{user}"
    assert n.name("GET", "/cart/bob", H(authorization=basic("alice"))) == "GET /cart/bob"  # someone else's


@pytest.mark.parametrize(
    "value",
    ["Basic !!!", "Bearer a.b.c", "Bearer " + "x" * 9000, "Digest u", jwt({"sub": None}), jwt(["x"])],  # type: ignore[list-item]
)
def test_odd_credentials_name_nobody(value: str) -> None:
    assert caller(value) == frozenset()


def test_a_position_with_many_words_becomes_a_variable() -> None:
    n = EndpointNamer()
    users = [f"user{c}" for c in "abcdefghij"]
    names = [n.name("GET", f"/cart/{u}") for u in users]
    assert names[:MANY] == [f"GET /cart/{u}" for u in users[:MANY]]
    assert set(names[MANY:]) == {"GET /cart/{var}"}
    assert n.name("GET", "/cart/usera") == "GET /cart/{var}"  # from then on, the first ones too
    # Another method, another depth or another prefix counts its own words.
    assert n.name("DELETE", "/cart/usera") == "DELETE /cart/usera"
    assert n.name("GET", "/cart/usera/items") == "GET /cart/usera/items"
    assert n.name("GET", "/api/products") == "GET /api/products"
    for w in users:  # the first segment names a resource: never a variable
        assert n.name("GET", f"/{w}") == f"GET /{w}"


def test_endpoints_named_before_a_position_varied_join_it_in_the_judgement() -> None:
    """/cart/alice and /cart/bob, met before there were many users, join /cart/{var} once there are."""
    n = EndpointNamer()
    judge = Judge(current=n.current)
    users = [f"user{c}" for c in "abcdefghij"]
    for u in users:
        judge.candidate("m", n.name("GET", f"/cart/{u}/items"), mismatch("/total: 1 -> 2"))
    judge.candidate("m", n.name("GET", "/health"), Comparison("match"))
    merged = {e["endpoint"]: e for e in judge.to_json()}
    assert set(merged) == {"GET /cart/{var}/items", "GET /health"}
    assert merged["GET /cart/{var}/items"]["compared"] == 10
    assert {f["field"]: f["candidate"] for f in merged["GET /cart/{var}/items"]["fields"]} == {"/total": 10}
    assert len(judge.endpoints) == MANY + 2  # the counts themselves are left as they were
    assert judge.endpoints[("m", "GET /cart/usera/items")].compared == 1
    assert n.current("about page") == "about page" and n.current("GET /cart/usera") == "GET /cart/usera"


def test_word_counting_is_bounded_and_in_the_memory_budget() -> None:
    budget = MemoryBudget(10**6)
    n = EndpointNamer(max_prefixes=10, budget=budget)
    for i in range(100):  # ten times the prefixes it may count
        n.name("GET", f"/p{i}/a/x")
    assert len(n.words) + len(n.varying) == 10 and budget.held == n.held > 0
    assert all(len(w) <= MANY for w in n.words.values())
    n.close()
    assert budget.held == 0
    cached = EndpointNamer(budget=budget)
    for i in range(10_000):  # more paths than it caches: the cache is emptied, and its bytes given back
        cached.name("GET", f"/{i}")
    assert 0 < len(cached.cache) <= 4096 and budget.held == cached.held == cached.cache_held
    cached.close()
    assert budget.held == 0
    full = EndpointNamer(budget=MemoryBudget(0))
    assert [full.name("GET", f"/cart/u{c}x") for c in "abcdefghijk"][-1] == "GET /cart/ukx"  # learns nothing
    assert full.words == {} and full.varying == set()


def test_patterns_and_the_header_name_endpoints() -> None:
    n = EndpointNamer(parse_patterns(["GET /shop/{shop}/cart/{user}", "/docs/{page}", "* /x/{y}"]))
    assert n.name("GET", "/shop/acme/cart/bob?x=1") == "GET /shop/{shop}/cart/{user}"
    assert n.name("POST", "/shop/acme/cart/bob") == "POST /shop/acme/cart/bob"  # the pattern is for GET
    assert n.name("PUT", "/docs/intro") == "PUT /docs/{page}"
    assert n.name("GET", "/x/1") == "GET /x/{y}"
    assert n.name("GET", "/docs/a/b") == "GET /docs/a/b"  # {page} is one segment
    given = H({"canonical-resource": "cart-view\r\n" + "x" * 500})
    assert n.name("GET", "/anything", given) == "cart-view" + "x" * 191


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("cart/{user}", "expected [METHOD ]/path with {name} segments"),
        ("G3T /a", "'G3T' is not a method"),
        ("/a/{b}c", "'{b}c' must be a whole segment {name}"),
    ],
)
def test_bad_patterns_are_one_line_errors(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=None) as e:
        parse_patterns([entry])
    assert str(e.value) == f"endpoint pattern {entry!r}: {message}"


# ------------------------------------------------------------------------------------------ the secondary


def prod(service: str) -> Mapping:
    return Mapping(name="svc", namespace="default", source="test", prefix="/", service=service)


def test_secondary_entries_pick_a_service_or_all() -> None:
    entries = secondary.parse(["orders=127.0.0.1:9100", "https://127.0.0.1:9200"])
    own = Address("http", "orders", 80)
    assert secondary.address_for(entries, prod("orders.default:80"), own) == Address("http", "127.0.0.1", 9100)
    assert secondary.address_for(entries, prod("users"), own) == Address("https", "127.0.0.1", 9200)
    assert secondary.address_for(secondary.parse(["orders=127.0.0.1:9100"]), prod("users"), own) is None
    assert secondary.address_for(entries, None, None) is None
    with pytest.raises(ValueError, match="expected NAME"):
        secondary.parse(["=x"])


def test_the_secondary_copy_is_the_same_request_with_productions_host() -> None:
    c = Copy("svc-next", "next", Address("http", "next", 80), "POST", "/a?b", "shop-shadow", (), b"body", 3.0)
    c.context = "flow-1"
    s = secondary.copy_for(c, Address("http", "127.0.0.1", 9100), "shop")
    assert (s.method, s.path, s.body, s.host) == ("POST", "/a?b", b"body", "shop")
    assert s.address == Address("http", "127.0.0.1", 9100) and s.mapping == "svc-next/secondary"
    assert secondary.primary_key(s.context) == "flow-1" and secondary.primary_key(c.context) is None


def test_without_a_secondary_production_answering_again_is_the_noise_sample() -> None:
    p = Pairing(Metrics(), CompareConfig())
    lesson = request_key("GET", "/a", b"")
    for i in range(4):
        key = f"k{i}"
        p.expect(key, "m", "GET /a", {})
        answer = js({"ts": i // 2, "price": 10})  # production's timestamp changes every other answer
        p.learn("m", lesson, answer, key)
        p.production(key, answer)
        p.shadow(key, js({"ts": 99, "price": 12}), None)
    [e] = p.store.to_json()["judgement"]["endpoints"]
    f = {r["field"]: r for r in e["fields"]}
    assert e["noise_samples"] == 3 and f["/ts"]["noise"] == 1 and f["/price"]["noise"] == 0
    assert f["/price"]["reported"] and f["/ts"]["reported"]  # 100 % vs 33 %: the shadow's own change too
    assert e["provisional"] is False


def test_the_shapes_a_namer_keeps_give_the_names_it_would_give_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """The namer keeps each word's shape (id-like or not) for the paths that share it: bounded, and never a name
    other than the one worked out afresh, before or after the bound empties it."""
    monkeypatch.setattr(endpoints_module, "SHAPES", 4)
    paths = ["/users/usr_1234/cart", "/objects/507f1f77bcf86cd799439011", "/links/aB3dE5fG7hJ9kL1m", "/v1/items/7"]
    paths += ["/apis/v1beta1/oauth2/sha256", "/blobs/deadbeef", "/docs/page-2", "/x/" + "a1" * 40]
    kept, fresh = EndpointNamer(), EndpointNamer()
    for rnd in range(3):
        for p in paths:
            fresh.shapes.clear()
            fresh.cache.clear()
            kept.cache.clear()  # the names of whole paths are kept too: only the shapes are asked of here
            assert kept.name("GET", p) == fresh.name("GET", p), (rnd, p)
            assert len(kept.shapes) <= 4
    assert kept.shapes and "a1" * 40 not in kept.shapes and "7" not in kept.shapes  # long words and numbers: never
