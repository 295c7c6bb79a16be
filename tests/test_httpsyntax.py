"""The raw-field readers against mitmproxy's Headers, whose reading they replace on the per-request path."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy.http import Headers

from shadow_addon.httpsyntax import field_value, has_field

NAMES = [b"Host", b"host", b"HOST", b"Upgrade", b"upgrade", b"x-mitmproxy-shadow", b"X-Mitmproxy-Shadow", b"accept"]
FIELDS = st.lists(st.tuples(st.sampled_from(NAMES), st.binary(max_size=5)), max_size=8).map(tuple)


@settings(max_examples=300, deadline=None)
@given(fields=FIELDS, name=st.sampled_from([b"host", b"upgrade", b"x-mitmproxy-shadow", b"cookie"]))
def test_field_readers_read_as_headers_do(fields: tuple[tuple[bytes, bytes], ...], name: bytes) -> None:
    h = Headers(fields)
    assert has_field(fields, name) is (name.decode() in h)
    assert field_value(fields, name) == h.get(name.decode())
