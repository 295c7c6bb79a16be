"""The headers Envoy changes, as pure functions (the wire is in test_e2e_envoy.py)."""

from __future__ import annotations

import re
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy.http import Headers

from shadow_addon import envoyheaders as eh


@pytest.mark.parametrize(
    ("given", "expected", "changed"),
    [
        (
            {"connection": "Upgrade, HTTP2-Settings", "upgrade": "h2c", "http2-settings": "AA"},
            {},
            True,
        ),
        ({"connection": "close, upgrade", "upgrade": "H2C"}, {"connection": "close"}, True),  # other tokens stay
        ({"upgrade": "websocket"}, {}, True),  # no `Connection: upgrade`: not an upgrade, dropped
        ({"connection": "keep-alive", "upgrade": "websocket"}, {"connection": "keep-alive"}, True),
        ({"connection": "upgrade", "upgrade": "websocket"}, {"connection": "upgrade", "upgrade": "websocket"}, False),
        (
            {"connection": "upgrade", "upgrade": "h2c, websocket"},
            {"connection": "upgrade", "upgrade": "h2c, websocket"},
            False,
        ),
        ({"connection": "close"}, {"connection": "close"}, False),
    ],
)
def test_drop_unsupported_upgrade(given: dict[str, str], expected: dict[str, str], changed: bool) -> None:
    h = Headers(**{k.replace("-", "_"): v for k, v in given.items()})
    assert eh.drop_unsupported_upgrade(h) is changed
    assert {k.lower(): v for k, v in h.items()} == expected


def test_connection_manager_treats_every_request_as_an_edge_request() -> None:
    """No address is internal without internal_address_config (Emissary sets none): even a private client's
    x-request-id is replaced and its x-envoy-* headers are removed (conn_manager_utility.cc mutateRequestHeaders)."""
    private = eh.Downstream("10.0.0.5", "10.0.0.1", tls=True)
    h = Headers(
        x_request_id="abc",
        x_envoy_internal="true",
        x_envoy_expected_rq_timeout_ms="1",
        x_envoy_max_retries="9",
        keep_alive="timeout=5",
        proxy_connection="keep-alive",
    )
    eh.connection_manager(h, private, request_id="new")
    assert "keep-alive" not in h and "proxy-connection" not in h
    assert h["x-request-id"] == "new" and "x-envoy-internal" not in h
    assert "x-envoy-expected-rq-timeout-ms" not in h and "x-envoy-max-retries" not in h
    assert h["x-envoy-external-address"] == "10.0.0.5"
    assert h["x-forwarded-for"] == "10.0.0.5" and h["x-forwarded-proto"] == "https"
    loopback = eh.Downstream("127.0.0.1", "192.0.2.7", tls=False)
    h = Headers(x_forwarded_for="203.0.113.9")
    eh.connection_manager(h, loopback)
    assert h["x-forwarded-for"] == "203.0.113.9, 192.0.2.7"  # a loopback peer: Envoy's own address appended
    assert h["x-forwarded-proto"] == "http"


def test_router_headers_and_the_mirror() -> None:
    h = Headers()
    eh.router(h, 0, None)  # timeout 0 is none (router.cc: only a timeout > 0 is written)
    assert not h
    eh.router(h, 3000, "/a/b?c")
    assert h["x-envoy-expected-rq-timeout-ms"] == "3000" and h["x-envoy-original-path"] == "/a/b?c"
    mirrored = Headers(eh.mirror(Headers(x_forwarded_for="1.2.3.4").fields, "10.0.0.1", 3000))
    assert mirrored["x-forwarded-for"] == "1.2.3.4, 10.0.0.1" and mirrored["x-envoy-internal"] == "true"
    assert mirrored["x-envoy-expected-rq-timeout-ms"] == "3000"  # the async client's router sets it again
    assert "x-envoy-expected-rq-timeout-ms" not in Headers(eh.mirror(Headers().fields, None, 0))


# ---------------------------------------------------------------- the one-pass edits against Headers' own


class Reference:
    """The same edits made one `Headers[name] = value` at a time, as mitmproxy's Headers define them: the oracle
    of `edit`'s one pass."""

    @staticmethod
    def append_xff(headers: Headers, ip: str) -> None:
        if not ip:
            return
        old = headers.get(eh.XFF)
        headers[eh.XFF] = f"{old}, {ip}" if old else ip

    @classmethod
    def connection_manager(cls, headers: Headers, d: eh.Downstream, request_id: str) -> None:
        headers.fields = tuple(kv for kv in headers.fields if kv[0].lower() not in eh._CLEANED)
        cls.append_xff(headers, d.local_ip if eh._is_loopback(d.client_ip) else d.client_ip)
        headers["x-forwarded-proto"] = "https" if d.tls else "http"
        if d.client_ip:
            headers["x-envoy-external-address"] = d.client_ip
        headers["x-request-id"] = request_id

    @staticmethod
    def router(headers: Headers, timeout_ms: int, original_path: str | None) -> None:
        if timeout_ms > 0:
            headers["x-envoy-expected-rq-timeout-ms"] = str(timeout_ms)
        if original_path is not None:
            headers["x-envoy-original-path"] = original_path

    @classmethod
    def mirror(cls, fields: eh.Fields, local_ip: str | None, timeout_ms: int) -> eh.Fields:
        h = Headers(fields)
        h[eh.INTERNAL] = "true"
        if local_ip:
            cls.append_xff(h, local_ip)
        cls.router(h, timeout_ms, None)
        return h.fields


# Every name the edits touch, in several spellings, a name they clean, and others.
NAMES = [
    b"X-Forwarded-For",
    b"x-forwarded-for",
    b"X-FORWARDED-PROTO",
    b"x-request-id",
    b"X-Request-Id",
    b"x-envoy-external-address",
    b"X-Envoy-Internal",
    b"x-envoy-expected-rq-timeout-ms",
    b"X-Envoy-Original-Path",
    b"Keep-Alive",
    b"x-envoy-max-retries",
    b"x-envoy-decorator-operation",
    b"host",
    b"accept",
    b"Cookie",
]
FIELDS = st.lists(st.tuples(st.sampled_from(NAMES), st.binary(max_size=6)), max_size=10).map(tuple)
IPS = st.sampled_from(["", "127.0.0.1", "::1", "10.0.0.5", "192.0.2.7", "fe80::1%eth0", "2001:db8::9"])


@settings(max_examples=400, deadline=None)
@given(fields=FIELDS, client=IPS, local=IPS, tls=st.booleans(), rid=st.sampled_from(["", "abc", "é-id"]))
def test_connection_manager_edits_as_headers_do(
    fields: eh.Fields, client: str, local: str, tls: bool, rid: str
) -> None:
    d = eh.Downstream(client, local, tls)
    expected = Headers(fields)
    Reference.connection_manager(expected, d, rid or "f47ac10b-58cc-4372-a567-0e02b2c3d479")
    got = eh.edge_fields(fields, d, rid or None)
    if not rid:  # a new random id: in the place and under the name the oracle put its own
        (i,) = [i for i, (k, _) in enumerate(got) if k.lower() == b"x-request-id"]
        assert re.fullmatch(rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", got[i][1])
        got = (*got[:i], (got[i][0], b"f47ac10b-58cc-4372-a567-0e02b2c3d479"), *got[i + 1 :])
    assert got == expected.fields
    h = Headers(fields)
    eh.connection_manager(h, d, rid or "x")
    Reference.connection_manager(expected := Headers(fields), d, rid or "x")
    assert h.fields == expected.fields


@settings(max_examples=300, deadline=None)
@given(
    fields=FIELDS,
    timeout=st.sampled_from([0, -1, 1, 3000]),
    path=st.sampled_from([None, "", "/a/b?c", "/é\udcff"]),
    ip=IPS,
)
def test_router_mirror_and_xff_edit_as_headers_do(fields: eh.Fields, timeout: int, path: str | None, ip: str) -> None:
    h, expected = Headers(fields), Headers(fields)
    eh.router(h, timeout, path)
    Reference.router(expected, timeout, path)
    assert h.fields == expected.fields
    assert eh.mirror(fields, ip or None, timeout) == Reference.mirror(fields, ip or None, timeout)
    h, expected = Headers(fields), Headers(fields)
    eh.append_xff(h, ip)
    Reference.append_xff(expected, ip)
    assert h.fields == expected.fields


def test_request_ids_are_random_uuid4_strings() -> None:
    """x-request-id as str(uuid.uuid4()) writes it, across the blocks of random bytes the ids are cut from."""
    ids = [eh.new_request_id().decode() for _ in range(300)]
    assert len(set(ids)) == len(ids)
    for i in ids:
        u = uuid.UUID(i)
        assert str(u) == i and u.version == 4 and u.variant == uuid.RFC_4122
