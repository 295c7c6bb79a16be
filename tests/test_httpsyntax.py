"""The raw-field readers against mitmproxy's Headers, whose reading they replace on the per-request path."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy.http import Headers

from shadow_addon.httpsyntax import FieldView, field_value, field_values, has_field

NAMES = [b"Host", b"host", b"HOST", b"Upgrade", b"upgrade", b"x-mitmproxy-shadow", b"X-Mitmproxy-Shadow", b"accept"]
NAMES += [b"Cookie", b"cookie", b"Authorization", b"\xc3\x89t\xc3\xa9"]
VALUES = st.binary(max_size=5) | st.sampled_from([b"\xc3", b"a\xff", b" v "])  # not UTF-8, spaces
FIELDS = st.lists(st.tuples(st.sampled_from(NAMES), VALUES), max_size=8).map(tuple)


@settings(max_examples=300, deadline=None)
@given(fields=FIELDS, name=st.sampled_from([b"host", b"upgrade", b"x-mitmproxy-shadow", b"cookie"]))
def test_field_readers_read_as_headers_do(fields: tuple[tuple[bytes, bytes], ...], name: bytes) -> None:
    h = Headers(fields)
    assert has_field(fields, name) is (name.decode() in h)
    assert field_value(fields, name) == h.get(name.decode())


@settings(max_examples=300, deadline=None)
@given(fields=FIELDS)
def test_several_fields_read_in_one_pass_as_headers_read_each(fields: tuple[tuple[bytes, bytes], ...]) -> None:
    """`field_values` (production's answer's lesson key) and `FieldView` (the endpoint's name) read as
    `Headers.get` does, values of other bytes than UTF-8 included."""
    h = Headers(fields)
    names = (b"authorization", b"cookie", b"accept")
    assert field_values(fields, names) == [h.get(n.decode(), "") for n in names]
    view = FieldView(fields)
    for name in ("Cookie", "authorization", "HOST", "x-absent", "\u00c9t\u00e9"):
        assert view.get(name) == h.get(name)
