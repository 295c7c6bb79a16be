"""The YAML reader's two composers read alike: libyaml's own (C, for text whose shape bounds its nesting) and the
bounded one, on the same constructors, bounds and duplicate-key rule."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import CORPUS

from shadow_addon.mappings import yamlreader
from shadow_addon.mappings.model import LoadResult, MappingError

ROOT = Path(__file__).resolve().parent.parent


def read(text: str, c_tree: bool, nodes: int = 0) -> tuple[str, str, int]:
    old = yamlreader._C_COMPOSE_BOUND
    yamlreader._C_COMPOSE_BOUND = old if c_tree else 0  # 0: no text is shallow enough, the bounded composer reads
    r = LoadResult(nodes=nodes)
    try:
        return "ok", repr(yamlreader.iter_documents(text, "f.yaml", r)), r.nodes
    except MappingError as e:
        return "error", str(e), r.nodes
    finally:
        yamlreader._C_COMPOSE_BOUND = old


pytestmark = pytest.mark.skipif(yamlreader._CTreeLoader is None, reason="PyYAML without libyaml has one composer")

scalars = st.sampled_from(["1", "x", "'q'", "*a", "true", "null", "1.5", "&a z", "!!int ''", "0x1f", "~", '"\\udcff"'])
keys = st.sampled_from(["a", "b", "c", "<<", "1", "'a'"])
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")
        | st.lists(st.tuples(keys, inner), max_size=3).map(lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}")
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(first=values, second=values, block=st.booleans())
def test_both_composers_read_any_text_alike(first: str, second: str, block: bool) -> None:
    text = f"r: &a {first}\ns: {second}\n" if block else f"- &a {first}\n---\n- {second}\n"
    assert read(text, True) == read(text, False)


@pytest.mark.parametrize("depth", [63, 64, 65])
def test_the_nesting_bound_is_the_same(depth: int) -> None:
    flow = "[" * depth + "]" * depth
    block = "".join("  " * i + f"k{i}:\n" for i in range(depth)) + "  " * depth + "v\n"
    for text in (flow, block):
        assert read(text, True) == read(text, False)
    assert (read(flow, True)[0] == "ok") == (depth <= yamlreader.MAX_DEPTH)


@pytest.mark.parametrize("already", [0, yamlreader.MAX_NODES - 9, yamlreader.MAX_NODES - 10])
def test_the_node_bound_counts_aliases_as_the_bounded_composer_does(already: int) -> None:
    text = "a: &x [1, 2]\nb: [*x, *x, *x]\n"
    assert read(text, True, already) == read(text, False, already)


def test_every_file_of_the_corpus_and_the_malformed_set_reads_alike() -> None:
    files = glob.glob(str(CORPUS / "**" / "*.y*ml"), recursive=True)
    files += glob.glob(str(ROOT / "tests" / "malformed" / "*.y*ml"))
    assert files
    for f in files:
        text = Path(f).read_text(errors="replace")
        assert read(text, True) == read(text, False), f


def test_text_that_could_nest_past_the_c_stack_goes_to_the_bounded_composer() -> None:
    assert yamlreader._c_composer_is_safe("a: [1, {b: c}]\n")
    assert not yamlreader._c_composer_is_safe("[" * 3000)
    assert not yamlreader._c_composer_is_safe("- " * 1500 + "x\n")
    deep = "[" * 100_000 + "]" * 100_000
    status, message, _ = read(deep, True)
    assert status == "error" and "nests deeper than 64 levels" in message


@pytest.mark.parametrize("deep", [60, 63, 64])
def test_an_anchor_is_checked_where_it_is_defined_not_at_a_shallower_alias(deep: int) -> None:
    """`b: *x` is shallower than `&x`'s definition: the nesting bound applies where the bounded composer composes it."""
    text = "a: " + "[" * 4 + "&x " + "[" * deep + "]" * deep + "]" * 4 + "\nb: *x\nc: [*x]\n"
    assert read(text, True) == read(text, False)
