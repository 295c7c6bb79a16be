"""Comparison at a bounded cost with exact results: budgets per pair and per second, memory in the budget, faults
ending one pair, clipped outputs, and the property that different bytes are never an exact match. Plain data."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadow_addon.budget import MemoryBudget, TimeBudget
from shadow_addon.compare import changes as changes_module
from shadow_addon.compare import jsondiff
from shadow_addon.compare import pairing as pairing_module
from shadow_addon.compare import prints as prints_module
from shadow_addon.compare.config import CompareConfig
from shadow_addon.compare.diff import compare
from shadow_addon.compare.noise import NoiseLearner, NoiseSet
from shadow_addon.compare.pairing import Pairing
from shadow_addon.compare.render import MAX_LABEL, MAX_VALUE, render
from shadow_addon.compare.reply import NOT_JSON, Reply
from shadow_addon.compare.result import Comparison
from shadow_addon.compare.store import MismatchStore
from shadow_addon.metrics import Metrics

JSON = [("content-type", "application/json")]


def js(doc: Any, status: int = 200) -> Reply:
    return Reply.of(status, JSON, json.dumps(doc).encode())


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def run_pair(pr: Pairing, key: str, p: Reply, s: Reply) -> Comparison:
    out: list[Comparison] = []
    if not pr.expect(key, "m", "GET /", {"method": "GET", "path": "/"}):
        return Comparison("skipped", reason="budget")  # not paired: counted as skipped by the pairing itself
    pr.production(key, p)
    pr.shadow(key, s, None, out.append)
    assert len(out) == 1
    return out[0]


# ------------------------------------------------------------------------ exact: different bytes never match


def _oracle(body: bytes) -> Any:
    """An independent reading of a JSON body: objects as sorted (key, value) lists with duplicates kept, numbers
    as normalised Decimals, booleans apart from numbers. None when not strict JSON."""

    def num(text: str) -> Any:
        return ("n", Decimal(text).normalize())

    def fix(v: Any) -> Any:
        if isinstance(v, list) and v and v[0] == "obj":
            return v
        if isinstance(v, bool) or v is None:
            return ("c", v)
        if isinstance(v, str):
            return ("s", v)
        if isinstance(v, list):
            return ("a", [fix(x) for x in v])
        return v

    def obj(pairs: list[tuple[str, Any]]) -> Any:
        return ("o", sorted(((k, fix(v)) for k, v in pairs), key=repr))

    def bad(name: str) -> Any:
        raise ValueError(name)

    try:
        doc = json.loads(body, object_pairs_hook=obj, parse_float=num, parse_int=num, parse_constant=bad)
    except (ValueError, RecursionError):
        return None
    return fix(doc)


def _no_duplicates(v: Any) -> bool:
    if isinstance(v, tuple) and v[0] == "o":
        keys = [k for k, _ in v[1]]
        return len(keys) == len(set(keys)) and all(_no_duplicates(x) for _, x in v[1])
    if isinstance(v, tuple) and v[0] == "a":
        return all(_no_duplicates(x) for x in v[1])
    return True


CTYPES = [
    "application/json",
    "text/plain",
    "text/plain; charset=latin-1",
    "text/plain; charset=utf-8",
    "text/plain; charset=base64",
    "text/plain; charset=rot13",
    "application/octet-stream",
    "text/html; charset=no-such",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=4), kids, max_size=4),
    max_leaves=12,
)


def _check_exact(ctype: str, a: bytes, b: bytes) -> None:
    headers = [("content-type", ctype)]
    c = compare(Reply.of(200, headers, a), Reply.of(200, headers, b), CompareConfig())
    if a == b:
        assert c.result == "match"
        return
    if c.result != "match":
        return
    # A match of different bytes: only two JSON bodies with exactly the same values (a formatting difference).
    assert ctype == "application/json", (ctype, a, b)
    oa, ob = _oracle(a), _oracle(b)
    assert oa is not None and oa == ob and _no_duplicates(oa), (a, b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CTYPES), st.binary(min_size=1, max_size=64), st.data())
def test_bodies_differing_in_any_byte_are_never_an_exact_match(ctype: str, body: bytes, data: Any) -> None:
    i = data.draw(st.integers(0, len(body) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda x: x != body[i]))
    _check_exact(ctype, body, body[:i] + bytes([new]) + body[i + 1 :])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.data())
def test_json_bodies_differing_in_any_byte_match_only_with_the_same_values(doc: Any, data: Any) -> None:
    body = json.dumps(doc).encode()
    i = data.draw(st.integers(0, len(body) - 1))
    new = data.draw(st.sampled_from(b' 0123456789.eE-+"[]{},:tfnx\\u\t\n').filter(lambda x: x != body[i]))
    _check_exact("application/json", body, body[:i] + bytes([new]) + body[i + 1 :])


@settings(max_examples=200, deadline=None)
@given(json_values, json_values)
def test_json_documents_match_only_when_their_values_are_the_same(a: Any, b: Any) -> None:
    _check_exact("application/json", json.dumps(a).encode(), json.dumps(b).encode())


def test_a_difference_is_hidden_only_by_an_ignore_rule_or_learned_noise() -> None:
    p, s = js({"a": 1, "b": 1}), js({"a": 1, "b": 2})
    assert compare(p, s, CompareConfig()).result == "mismatch"
    assert compare(p, s, CompareConfig(ignore=("/b",))).result == "match"
    n = NoiseSet()
    n.learn("path", ("b",))
    assert compare(p, s, CompareConfig(), n).result == "noise"


# ------------------------------------------------------------------------ bounded outputs


def test_values_and_labels_are_clipped_with_an_ellipsis_without_rendering_whole_values() -> None:
    big = {f"k{i}": "v" * 50_000 for i in range(20)}
    text = render(big)
    assert len(text) == MAX_VALUE and text.endswith("...") and text.startswith('{"k0":"vvv')
    assert render([list(range(100_000))]).endswith("...")
    long_key = "x" * 10_000
    c = compare(js({long_key: big}), js({long_key: {"k0": 1}}), CompareConfig(parse_limit=2 << 20))
    assert c.result == "mismatch" and all(len(d) <= MAX_LABEL + 2 * MAX_VALUE + 8 for d in c.diffs)
    assert all(len(d.field) <= MAX_LABEL for d in c.differences)
    assert c.diffs[0].startswith("/" + "x" * 10) and "..." in c.diffs[0]


def test_the_store_pages_its_records_newest_first() -> None:
    store = MismatchStore(capacity=10)
    for i in range(15):
        store.add("m", "GET /", {"path": f"/{i}"}, js(1), js(2), compare(js(1), js(2), CompareConfig()))
    first = store.to_json(0, 4)
    assert (first["total"], first["offset"], first["limit"]) == (10, 0, 4)
    assert [r["request"]["path"] for r in first["records"]] == ["/14", "/13", "/12", "/11"]
    assert [r["request"]["path"] for r in store.to_json(8, 4)["records"]] == ["/6", "/5"]
    assert store.to_json(0, 10_000)["limit"] == 200


def test_the_report_file_is_rotated_at_its_cap(tmp_path: Path) -> None:
    path = tmp_path / "report.jsonl"
    pr = Pairing(Metrics(), CompareConfig(report_max=2000), str(path))
    for i in range(40):
        assert run_pair(pr, str(i), js({"a": i}), js({"a": -i - 1})).result == "mismatch"
    pr.close()
    assert path.stat().st_size <= 2000 and (tmp_path / "report.jsonl.1").stat().st_size <= 2000
    lines = path.read_text().splitlines() + (tmp_path / "report.jsonl.1").read_text().splitlines()
    assert all(json.loads(line)["result"] == "mismatch" for line in lines) and len(lines) >= 6


# ------------------------------------------------------------------------ bounded cost


def test_past_its_share_of_the_loop_a_pair_is_skipped_and_counted() -> None:
    clock, timer = Clock(), Clock()

    def tick() -> float:  # each comparison measured takes 20 ms
        timer.t += 0.02
        return timer.t

    pr = Pairing(Metrics(), CompareConfig(loop_share=0.05), clock=clock, timer=tick)
    for i in range(5):  # identical bytes cost nothing
        assert run_pair(pr, f"same{i}", js({"a": 1}), js({"a": 1})).result == "match"
    assert pr.loop.tokens == 0.05
    results = [run_pair(pr, str(i), js({"a": "x" * 400, "i": i}), js({"a": "y" * 400})).result for i in range(8)]
    assert results == ["mismatch"] * 3 + ["skipped"] * 5  # 50 ms of a second's share: overdrawn by the third
    assert pr.metrics.compare_skipped[("m", "budget")] == 5 and not pr.pairs  # not even paired: nothing kept
    clock.t += 10.0  # later the share is there again
    assert run_pair(pr, "later", js({"a": "x" * 400}), js({"a": "y" * 400})).result == "mismatch"


def test_time_budget_refills_at_its_share_and_is_overdrawn_by_one_item_at_most() -> None:
    clock = Clock()
    b = TimeBudget(0.1, clock)
    assert b.allows()
    b.spend(0.3)  # one long item: allowed to start, the bucket is overdrawn
    assert not b.allows() and b.refused == 1
    clock.t += 1.0
    assert not b.allows()  # 0.1 s repaid of 0.2 owed
    clock.t += 1.5
    assert b.allows()
    clock.t += 100
    b.allows()
    assert b.tokens == 0.1  # holds at most a second's share


def test_json_over_the_parse_limit_is_compared_as_bytes() -> None:
    p, s = js({"a": "x" * 100, "b": 1}), js({"a": "x" * 100, "b": 2})
    c = compare(p, s, CompareConfig(parse_limit=50))
    assert c.result == "mismatch" and p._json is NOT_JSON.__class__ or p.will_parse()
    assert c.diffs[0].startswith("body: line 1: ")


def test_a_walk_past_its_node_cap_is_skipped_as_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsondiff, "MAX_NODES", 50)
    c = compare(js(list(range(100))), js(list(range(1, 101))), CompareConfig())
    assert (c.result, c.reason) == ("skipped", "size")


def test_noise_learning_and_covers_are_linear_in_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    depth = prints_module.MAX_DEPTH
    doc = lambda leaf: {"l": [{"a": {"b": leaf, "c": i}} for i in range(300)], "d": _nest(depth - 2, leaf)}  # noqa: E731
    named = []
    real_path = changes_module.path_of
    monkeypatch.setattr(changes_module, "path_of", lambda nodes, key: named.append(key) or real_path(nodes, key))
    learner = NoiseLearner(max_nodes=100_000)
    learner.observe("m", "k", js(doc(1)))
    learner.observe("m", "k", js(doc(2)))
    noise = learner.noise("m")
    assert ("l", None, "a", "b") in noise.paths and ("d",) + ("x",) * (depth - 2) in noise.paths
    assert len(named) == 2  # 301 changed leaves, two fields named: each walk up happens once per field
    assert noise.covers(("l", "7", "a", "b")) and not noise.covers(("l", "7", "a", "c"))
    assert noise.covers(("d",) + ("x",) * (depth - 2) + ("y",) * 5000)  # beneath a learned field
    c = compare(js(doc(1)), js(doc(3)), CompareConfig(), noise)
    assert c.result == "noise" and len(c.noisy) == 21


def test_what_an_observation_names_is_bounded_however_many_fields_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten times more changed fields than are named, deep ones: each is walked up at most once per observation,
    and only the first MAX_CHANGES (besides those learned) are."""
    depth = prints_module.MAX_DEPTH - 2
    doc = lambda leaf: {f"k{i}": _nest(depth, leaf) for i in range(10 * changes_module.MAX_CHANGES)}  # noqa: E731
    named = []
    real_path = changes_module.path_of
    monkeypatch.setattr(changes_module, "path_of", lambda nodes, key: named.append(key) or real_path(nodes, key))
    learner = NoiseLearner(max_nodes=200_000, node_budget=200_000, max_noise=8)
    learner.observe("m", "k", js(doc(0)))
    for leaf in (1, 2):
        named.clear()
        changes = learner.observe("m", "k", js(doc(leaf)))
        assert changes is not None and len(changes.fields) == changes_module.MAX_CHANGES
        assert changes.more == 9 * changes_module.MAX_CHANGES and len(set(changes.fields)) == changes_module.MAX_CHANGES
        assert len(named) == len(set(named)) <= changes_module.MAX_CHANGES + 8  # learned ones are named too, once
    assert len(learner.noise("m")) == 8


def _nest(depth: int, leaf: Any) -> Any:
    v = leaf
    for _ in range(depth):
        v = {"x": v}
    return v


def test_prints_nested_past_max_depth_keep_no_field_detail() -> None:
    learner = NoiseLearner(max_nodes=100_000)
    learner.observe("m", "k", js(_nest(prints_module.MAX_DEPTH + 5, 1)))
    learner.observe("m", "k", js(_nest(prints_module.MAX_DEPTH + 5, 2)))
    assert len(learner.noise("m")) == 0 and learner.nodes == 0


# ------------------------------------------------------------------------ memory in the budget, faults


def test_noise_prints_and_stored_mismatches_are_held_in_the_memory_budget() -> None:
    budget = MemoryBudget(10 << 20)
    pr = Pairing(Metrics(), CompareConfig(), budget=budget)
    for i in range(30):
        prod = Reply.of(200, JSON, json.dumps({"i": i, "v": list(range(50))}).encode())
        pr.learn("m", f"k{i}", prod)
        run_pair(pr, f"p{i}", prod, js({"i": -1}))
    assert pr.learner.held == sum(p.bytes for p in pr.learner.prints.values()) > 30 * 50 * prints_module.NODE_BYTES
    stored = sum(r.size for r in pr.store.records)
    assert len(pr.store.records) == 30 and budget.held == pr.learner.held + stored + pr.judge.held
    pr.close()
    assert budget.held == 0


def test_what_does_not_fit_the_memory_budget_is_not_kept() -> None:
    budget = MemoryBudget(4000)
    pr = Pairing(Metrics(), CompareConfig(), budget=budget)
    pr.learn("m", "k", js(list(range(100))))  # ~100 nodes: over the budget
    assert not pr.learner.prints and pr.learner.not_kept == 1
    for i in range(5):
        assert run_pair(pr, str(i), js({"a": i}), js({"a": "x" * 900})).result == "mismatch"
    assert budget.held <= 4000 and len(pr.store.records) == 1 and pr.store.not_kept == 4
    assert pr.metrics.compared[("m", "mismatch")] == 5  # counted whether kept or not
    pr.close()
    assert budget.held == 0


def test_a_fault_in_one_pair_ends_it_as_error_and_the_next_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    budget = MemoryBudget(1 << 20)
    pr = Pairing(Metrics(), CompareConfig(), budget=budget)
    real = pairing_module.compare
    calls = []

    def flaky(*args: Any, **kw: Any) -> Comparison:
        calls.append(1)
        if len(calls) == 1:
            raise LookupError("boom")
        return real(*args, **kw)

    monkeypatch.setattr(pairing_module, "compare", flaky)
    assert run_pair(pr, "1", js({"a": 1}), js({"a": 2})).result == "error"
    assert budget.held == 0 and not pr.pairs
    assert run_pair(pr, "2", js({"a": 1}), js({"a": 2})).result == "mismatch"
    assert pr.metrics.compared[("m", "error")] == 1 and pr.metrics.compared[("m", "mismatch")] == 1


def test_a_shadow_with_a_codec_for_a_charset_compares_and_keeps_nothing() -> None:
    budget = MemoryBudget(1 << 20)
    pr = Pairing(Metrics(), CompareConfig(headers=()), budget=budget)
    for i, charset in enumerate(["base64", "rot13", "hex", "utf-8"]):
        s = Reply.of(200, [("content-type", f"text/plain; charset={charset}")], b"aGVsbG8=\n")
        p = Reply.of(200, [("content-type", "text/plain")], b"hello\n")
        assert run_pair(pr, str(i), p, s).result == "mismatch"
    records = pr.store.to_json()["records"]
    assert json.dumps(records) and all(r["shadow"]["body_preview"] in (None, "aGVsbG8=\n") for r in records)
    pr.close()
    assert budget.held == 0


def test_a_fault_while_learning_ends_the_pair_as_error(monkeypatch: pytest.MonkeyPatch) -> None:
    pr = Pairing(Metrics(), CompareConfig(), budget=MemoryBudget(1 << 20))

    def broken(*args: Any) -> None:
        raise RuntimeError("x")

    monkeypatch.setattr(pr.learner, "observe", broken)
    out: list[Comparison] = []
    pr.expect("1", "m", "GET /", {})
    pr.shadow("1", js({"a": 1}), None, out.append)
    pr.learn = lambda *a: broken()  # type: ignore[method-assign]

    class Flow:  # the smallest production flow production_answered reads
        id = "1"

        class request:  # noqa: N801
            method, path, raw_content = "GET", "/", b""

            class headers:  # noqa: N801
                fields = ()

        class response:  # noqa: N801
            status_code, raw_content, trailers = 200, b'{"a": 1}', None

            class headers:  # noqa: N801
                fields = ((b"content-type", b"application/json"),)

    pr.production_answered(Flow, "m")  # type: ignore[arg-type]
    assert [c.result for c in out] == ["error"] and pr.budget is not None and pr.budget.held == 0


def test_decimal_numbers_learn_and_render() -> None:
    learner = NoiseLearner()
    learner.observe("m", "k", Reply.of(200, JSON, b'{"t": 1.5}'))
    learner.observe("m", "k", Reply.of(200, JSON, b'{"t": 1.50}'))  # the same number: nothing learned
    assert len(learner.noise("m")) == 0
    assert render(Decimal("1e400")) == "1E+400"
    assert os.sep  # keeps the import used on every platform


def test_past_its_share_at_the_shadows_head_a_pair_ends_there_unless_it_may_be_the_same_bytes() -> None:
    """Asked at the head of the shadow's answer: while the share allows, the body is kept; past it, the pair ends
    at once as skipped (budget), unless production's answer, in already, is as long (the same bytes compare at no
    cost). A pair already decided (production failed) is left to end under its own reason."""
    clock = Clock()
    pr = Pairing(Metrics(), CompareConfig(loop_share=0.05), clock=clock)
    for key in ("a", "b", "c", "d"):
        assert pr.expect(key, "m", "GET /", {"method": "GET", "path": "/"})
    assert pr.shadow_wanted("a", 10)  # the share allows
    pr.loop.spend(1.0)
    body = json.dumps({"a": 1}).encode()
    pr.production("b", js({"a": 1}))
    pr.production("c", js({"a": 1}))
    pr.production("d", None, "error")
    assert pr.shadow_wanted("b", len(body)) and "b" in pr.pairs  # may be the same bytes
    assert not pr.shadow_wanted("c", len(body) + 1) and "c" not in pr.pairs
    assert not pr.shadow_wanted("unknown", 10)
    assert pr.shadow_wanted("d", 10)
    assert pr.metrics.compare_skipped == {("m", "budget"): 1}
    assert pr.shadow("b", js({"a": 1}), None) and pr.metrics.compare_skipped == {("m", "budget"): 1}
    assert not pr.shadow("c", js({"a": 2}), None)  # ended at its head: its answer is no longer paired
    pr.close()


def test_minus_one_and_minus_two_are_different_values_to_the_noise_learner() -> None:
    """CPython hashes -1 and -2 alike: a print must still tell them apart (else production's -1 then -2 would
    teach nothing, and a noise sample would name fewer fields than the comparison of the same answers)."""
    learner = NoiseLearner()
    learner.observe("m", "k", js({"a": -1, "b": [None, -1]}))
    changes = learner.observe("m", "k", js({"a": -2, "b": [None, -2]}))
    assert changes is not None and set(changes.fields) == {"/a", "/b/*"}
    assert learner.noise("m").covers(("a",))


@pytest.mark.parametrize(
    ("a", "b", "result"),
    [
        (b"10e999999999999999999", b"10e999999999999999998", "mismatch"),
        (b"[1E+99999999999999999999]", b"[1E+99999999999999999999]", "match"),
        (b"[1e99999999999999999999]", b"[1e+99999999999999999999]", "mismatch"),  # bytes differ: not read as JSON
    ],
)
def test_a_number_beyond_any_decimal_is_compared_as_written(a: bytes, b: bytes, result: str) -> None:
    headers = [("content-type", "application/json")]
    assert compare(Reply.of(200, headers, a), Reply.of(200, headers, b), CompareConfig()).result == result
