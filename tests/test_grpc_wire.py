"""gRPC framing and status, and the HTTP/2 reading of a shadow's answer under caps, fed bytes in memory (an h2
server-side connection produces them)."""

from __future__ import annotations

from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest
from support import pb

from shadow_addon import grpcwire, h2fields
from shadow_addon.budget import MemoryBudget
from shadow_addon.h2answer import Answer
from shadow_addon.h2fields import request_headers
from shadow_addon.h2session import CONNECTION_WINDOW, STREAM_WINDOW, Done, Failed, Lost, Session
from shadow_addon.mappings import Address
from shadow_addon.reader import MAX_HEAD, MAX_HEADERS, MAX_INTERIM
from shadow_addon.sender import Copy

# ---------------------------------------------------------------- grpcwire


def test_grpc_status_comes_from_the_trailers_or_a_trailers_only_answer() -> None:
    grpc_head = [(b"content-type", b"application/grpc")]
    assert grpcwire.status(grpc_head, [(b"grpc-status", b"0")]) == "0"
    assert grpcwire.status(grpc_head, [(b"grpc-status", b"5"), (b"grpc-message", b"no%20such")]) == "5"
    assert grpcwire.message(grpc_head, [(b"grpc-message", b"no%20such")]) == "no such"
    assert grpcwire.status([*grpc_head, (b"grpc-status", b"14")], None) == "14"  # trailers-only
    assert grpcwire.status(grpc_head, None) == grpcwire.MISSING
    assert grpcwire.status([(b"content-type", b"application/json")], None) is None
    assert grpcwire.status(grpc_head, [(b"grpc-status", b"999")]) == grpcwire.INVALID
    assert grpcwire.status(grpc_head, [(b"grpc-status", b"\xff" * 100)]) == grpcwire.INVALID
    assert grpcwire.code_name("5") == "NOT_FOUND"
    assert grpcwire.is_grpc("application/grpc+proto") and not grpcwire.is_grpc("application/grpcx")


def test_messages_are_split_by_their_length_prefix() -> None:
    body = grpcwire.frame(b"one") + grpcwire.frame(b"", compressed=True) + grpcwire.frame(b"x" * 70000)
    assert grpcwire.split(body) == [(False, b"one"), (True, b""), (False, b"x" * 70000)]
    with pytest.raises(grpcwire.FramingError, match="only 2 left"):
        grpcwire.split(grpcwire.frame(b"abcd")[:-2])
    with pytest.raises(grpcwire.FramingError, match="prefix"):
        grpcwire.split(b"\x00\x00")
    with pytest.raises(grpcwire.FramingError, match="flag 7"):
        grpcwire.split(b"\x07\x00\x00\x00\x00")
    with pytest.raises(grpcwire.FramingError, match="more than 3"):
        grpcwire.split(grpcwire.frame(b"") * 4, max_messages=3)


# ---------------------------------------------------------------- the HTTP/2 session, fed bytes


def a_copy(**kw: object) -> Copy:
    base = dict(
        mapping="s",
        service="svc",
        address=Address("http", "127.0.0.1", 1),
        method="POST",
        path="/pkg.Svc/Call",
        host="api-shadow:8080",
        fields=(
            (b"Content-Type", b"application/grpc"),
            (b"TE", b"trailers"),
            (b"Connection", b"keep-alive"),
            (b"x-trace", b"t1"),
            (b"x-secret", b"s"),
        ),
        body=grpcwire.frame(b"hello"),
        timeout=3.0,
        add=((b"X-Mitmproxy-Shadow", b"1"),),
        remove=frozenset({b"x-secret"}),
        http2=True,
    )
    base.update(kw)
    return Copy(**base)  # type: ignore[arg-type]


class Peer:
    """The service's side: an h2 server connection exchanging bytes with a Session in memory."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.conn.initiate_connection()
        self.requests: dict[int, dict[str, object]] = {}
        self.results: list[Done | Failed | Lost] = []
        self.pump()

    def pump(self) -> None:
        for _ in range(20):
            out = self.session.outgoing()
            if out:
                for ev in self.conn.receive_data(out):
                    self._event(ev)
            back = self.conn.data_to_send()
            if back:
                self.results += self.session.receive(back)
            if not out and not back:
                return

    def _event(self, ev: h2.events.Event) -> None:
        if isinstance(ev, h2.events.RequestReceived):
            self.requests[ev.stream_id] = {"headers": list(ev.headers), "body": b"", "trailers": None}
        elif isinstance(ev, h2.events.DataReceived):
            self.requests[ev.stream_id]["body"] += ev.data  # type: ignore[operator]
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            self.requests[ev.stream_id]["trailers"] = list(ev.headers)

    def answer(
        self,
        sid: int,
        body: bytes = grpcwire.frame(b"ok"),
        status: bytes = b"0",
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.conn.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/grpc"), *(headers or [])])
        if body:
            self.conn.send_data(sid, body)
        self.conn.send_headers(sid, [(b"grpc-status", status)], end_stream=True)
        self.pump()


def start(
    session: Session, c: Copy, keep: int = 1024, limit: int = 64 * 1024, budget: MemoryBudget | None = None
) -> int:
    return session.start(request_headers(c, "http"), c.body, c.trailers, Answer(keep, limit, budget))


def test_a_copy_goes_with_shadow_authority_te_trailers_and_its_request_trailers() -> None:
    s = Session()
    peer = Peer(s)
    sid = start(s, a_copy(trailers=((b"X-Checksum", b"abc"),)))
    peer.pump()
    req = peer.requests[sid]
    heads = req["headers"]
    assert heads[:4] == [  # type: ignore[index]
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"api-shadow:8080"),
        (b":path", b"/pkg.Svc/Call"),
    ]
    names = [k for k, _ in heads]  # type: ignore[union-attr]
    assert (b"te", b"trailers") in heads  # type: ignore[operator]
    assert names.count(b"te") == 1 and b"connection" not in names and b"x-secret" not in names
    assert (b"x-trace", b"t1") in heads and (b"x-mitmproxy-shadow", b"1") in heads  # type: ignore[operator]
    assert req["body"] == grpcwire.frame(b"hello")
    assert req["trailers"] == [(b"x-checksum", b"abc")]
    peer.answer(sid)
    [done] = peer.results
    assert isinstance(done, Done) and done.stream_id == sid
    a = done.answer
    assert a.status == 200 and a.trailers == [(b"grpc-status", b"0")] and b"".join(a.kept) == grpcwire.frame(b"ok")
    assert grpcwire.status(a.headers, a.trailers) == "0"


def test_many_copies_share_one_connection() -> None:
    s = Session()
    peer = Peer(s)
    sids = [start(s, a_copy(body=grpcwire.frame(b"%d" % i))) for i in range(50)]
    peer.pump()
    assert len(set(sids)) == 50 and len(peer.requests) == 50
    for sid in reversed(sids):  # answered out of order
        peer.answer(sid)
    assert sorted(r.stream_id for r in peer.results if isinstance(r, Done)) == sorted(sids)
    assert not s.answers


def test_header_blocks_use_no_dynamic_table_and_repeated_fields_are_encoded_once() -> None:
    enc, other = h2fields.BlockEncoder(), h2fields.BlockEncoder()
    dec = hpack.Decoder()
    fields = [(b":method", b"POST"), (b":path", b"/pkg.Svc/Call"), (b"content-type", b"application/grpc")]
    first = enc.encode([*fields, (b"x-request-id", b"r1")])
    assert first[:1] == b"\x20"  # a dynamic table size update to 0 opens the connection's first block
    assert dec.decode(first, raw=True) == [*fields, (b"x-request-id", b"r1")] and dec.header_table_size == 0
    enc.header_table_size = 65536  # the service's SETTINGS_HEADER_TABLE_SIZE: a maximum, not a demand
    second = enc.encode([*fields, (b"x-request-id", b"r2")])
    assert dec.decode(second, raw=True) == [*fields, (b"x-request-id", b"r2")]
    assert second.startswith(b"".join(h2fields.encode_field(f) for f in fields))  # the same bytes as before
    assert hpack.Decoder().decode(other.encode(fields)[1:], raw=True) == fields  # another connection, same fields
    assert h2fields._FIELDS[fields[1]] is h2fields.encode_field(fields[1])  # kept once, shared


def test_the_field_cache_is_bounded_in_entries_and_field_size() -> None:
    h2fields.encode_field((b"x-big", b"v" * h2fields.MAX_CACHED_FIELD))
    assert (b"x-big", b"v" * h2fields.MAX_CACHED_FIELD) not in h2fields._FIELDS
    for i in range(h2fields.MAX_CACHED * 3):
        h2fields.encode_field((b"x-request-id", b"%d" % i))
        assert len(h2fields._FIELDS) <= h2fields.MAX_CACHED


def test_answers_have_large_windows_so_window_updates_go_out_in_bulk() -> None:
    s = Session()
    peer = Peer(s)
    assert peer.conn.remote_settings.initial_window_size == STREAM_WINDOW
    assert peer.conn.outbound_flow_control_window == CONNECTION_WINDOW
    sids = [start(s, a_copy(), limit=1 << 20) for _ in range(40)]
    peer.pump()
    for sid in sids:  # 40 answers of 16 KB: ten times the default window of the whole connection
        peer.answer(sid, body=grpcwire.frame(b"x" * 16_000))
    assert len([r for r in peer.results if isinstance(r, Done)]) == 40
    assert s.outgoing() == b""  # nothing to acknowledge yet: 640 KB of a 16 MiB window


def test_a_request_body_larger_than_the_window_is_sent_as_the_window_opens() -> None:
    s = Session()
    peer = Peer(s)
    body = grpcwire.frame(bytes(300_000))  # beyond the 65,535-byte initial window
    sid = start(s, a_copy(body=body))
    peer.pump()
    assert peer.requests[sid]["body"] == body


def test_the_stream_count_follows_the_service_settings() -> None:
    s = Session()
    peer = Peer(s)
    peer.conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2})
    peer.pump()
    assert s.capacity == 2
    start(s, a_copy())
    assert s.has_room()
    start(s, a_copy())
    assert not s.has_room()


@pytest.mark.parametrize(
    "headers, reason",
    [
        ([(b"x-big", b"v" * (MAX_HEAD + 1))], "head_limit"),
        ([(b"x-%d" % i, b"v") for i in range(MAX_HEADERS + 1)], "head_limit"),
        ([(b"content-length", b"%d" % (10 * 1024 * 1024))], "response_limit"),
    ],
    ids=["head-size", "head-fields", "declared-length"],
)
def test_an_answer_head_over_a_cap_fails_that_stream_only(headers: list[tuple[bytes, bytes]], reason: str) -> None:
    s = Session()
    peer = Peer(s)
    bad, good = start(s, a_copy()), start(s, a_copy())
    peer.pump()
    peer.conn.send_headers(bad, [(b":status", b"200"), *headers])
    peer.pump()
    peer.answer(good)
    fails = [r for r in peer.results if isinstance(r, Failed)]
    assert [(f.stream_id, f.error.reason) for f in fails] == [(bad, reason)]
    assert [r.stream_id for r in peer.results if isinstance(r, Done)] == [good]


def test_an_answer_body_over_the_limit_is_stopped_and_kept_bytes_come_from_the_budget() -> None:
    budget = MemoryBudget(10_000)
    s = Session(budget)
    peer = Peer(s)
    sid = start(s, a_copy(), keep=4_000, limit=50_000, budget=budget)
    peer.pump()
    peer.conn.send_headers(sid, [(b":status", b"200")])
    for _ in range(5):
        peer.conn.send_data(sid, bytes(16_000))
        peer.pump()
        if peer.results:
            break
    [f] = peer.results
    assert isinstance(f, Failed) and f.error.reason == "response_limit" and f.error.status == 200
    assert budget.held == 4_000  # what was kept, for the sender to release


def test_a_flood_of_interim_answers_is_stopped() -> None:
    s = Session()
    peer = Peer(s)
    sid = start(s, a_copy())
    peer.pump()
    for _ in range(MAX_INTERIM + 1):
        peer.conn.send_headers(sid, [(b":status", b"103"), (b"link", b"</a>")])
    peer.pump()
    [f] = peer.results
    assert isinstance(f, Failed) and f.error.reason == "interim_limit"


def test_a_reset_stream_and_a_goaway_are_outcomes() -> None:
    s = Session()
    peer = Peer(s)
    a, b, c = start(s, a_copy()), start(s, a_copy()), start(s, a_copy())
    peer.pump()
    peer.conn.reset_stream(a)
    peer.pump()
    peer.conn.close_connection(last_stream_id=b)
    peer.pump()
    failed = [r for r in peer.results if isinstance(r, Failed)]
    assert [(r.stream_id, r.error.reason) for r in failed] == [(a, "reset")]
    [lost] = [r for r in peer.results if isinstance(r, Lost)]
    assert lost.unprocessed == [c]  # the service never started it: it may go again on a new connection
    assert not s.has_room()


def test_bytes_that_are_not_http2_end_the_connection() -> None:
    s = Session()
    start(s, a_copy())
    [lost] = s.receive(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert isinstance(lost, Lost) and lost.reason == "bad_response"


def test_an_http2_copy_shows_as_the_grpc_call_it_was() -> None:
    from shadow_addon.flowview import shadow_flow
    from shadow_addon.sender import Outcome

    c = a_copy(trailers=((b"x-checksum", b"abc"),))
    out = Outcome(
        status=200,
        headers=[(b"content-type", b"application/grpc")],
        body=grpcwire.frame(b"ok"),
        http_version="HTTP/2.0",
        trailers=[(b"grpc-status", b"5")],
    )
    f = shadow_flow(c, out, "prod-id")
    assert f.request.http_version == "HTTP/2.0" and f.request.host_header == "api-shadow:8080"
    assert f.request.headers["te"] == "trailers" and "x-secret" not in f.request.headers
    assert f.request.trailers is not None and f.request.trailers["x-checksum"] == "abc"
    assert f.response is not None and f.response.trailers is not None and f.response.trailers["grpc-status"] == "5"


# ---------------------------------------------------------------- comparison of gRPC answers


def grpc_reply(body: bytes, status: str = "0", message: str | None = None) -> object:
    from shadow_addon.compare.reply import Reply

    trailers = [(b"grpc-status", status.encode())] + ([(b"grpc-message", message.encode())] if message else [])
    return Reply.of(200, [(b"content-type", b"application/grpc"), *trailers], body)


def test_protobuf_messages_are_decoded_generically() -> None:
    from shadow_addon.compare import protowire

    inner = pb((1, 7), (2, b"x"))
    body = grpcwire.frame(pb((1, b"hello"), (2, 150), (3, inner), (4, 1), (4, 2), (5, b"\xff\x00"))) + grpcwire.frame(
        b""
    )
    assert protowire.body(body) == [
        {"1": "hello", "2": 150, "3": {"1": 7, "2": "x"}, "4": [1, 2], "5": "base64:/wA="},
        {},
    ]
    assert protowire.body(grpcwire.frame(b"\x0a\x05ab")) is None  # a field cut short: not a message
    assert protowire.body(grpcwire.frame(b"x", compressed=True)) is None
    assert protowire.body(grpcwire.frame(b"\x08\x01" * (protowire.MAX_FIELDS + 1))) is None  # compared as bytes


def test_a_changed_protobuf_field_is_named_in_the_diff() -> None:
    from shadow_addon.compare import CompareConfig, compare

    prod = grpc_reply(grpcwire.frame(pb((1, b"alice"), (2, 10), (3, pb((1, 3))))))
    shadow = grpc_reply(grpcwire.frame(pb((1, b"alice"), (2, 12), (3, pb((1, 3))))))
    c = compare(prod, shadow, CompareConfig())  # type: ignore[arg-type]
    assert c.result == "mismatch" and c.kinds == {"body"}
    assert c.diffs == ["/0/2: 10 -> 12"]
    same = compare(prod, grpc_reply(grpcwire.frame(pb((1, b"alice"), (2, 10), (3, pb((1, 3)))))), CompareConfig())  # type: ignore[arg-type]
    assert same.result == "match"
    ignored = compare(prod, shadow, CompareConfig(ignore=("/0/2",)))  # type: ignore[arg-type]
    assert ignored.result == "match"


def test_grpc_status_is_compared_as_the_status() -> None:
    from shadow_addon.compare import CompareConfig, compare

    body = grpcwire.frame(pb((1, 1)))
    c = compare(grpc_reply(body), grpc_reply(b"", "5", "no such user"), CompareConfig())  # type: ignore[arg-type]
    assert c.result == "mismatch" and "status" in c.kinds
    assert "grpc-status: 0 (OK) -> 5 (NOT_FOUND)" in c.diffs
    assert "header grpc-message: missing -> no such user" in c.diffs


# ---------------------------------------------------------------- Mappings


def test_grpc_is_honoured_and_a_shadow_without_it_is_warned_about() -> None:
    from shadow_addon import explain, mappings, routing
    from shadow_addon.ingress import h2_services, preface

    def M(name: str, **kw: object) -> mappings.Mapping:
        return mappings.build_mapping(name, "default", "t", {"service": name + "-svc", "prefix": "/p.S/", **kw})

    prod = M("prod", grpc=True)
    assert prod.grpc and prod.ignored_fields == ()
    with pytest.raises(ValueError, match="grpc"):
        M("bad", grpc="yes")
    t = routing.build_table([prod, M("next", shadow=True)])
    [w] = explain.grpc_warnings(t)
    assert w.startswith("shadow next.default has no grpc: true but production prod.default has")
    assert w in explain.warnings(t)
    t2 = routing.build_table([prod, M("next", shadow=True, grpc=True), M("tls", prefix="/q/", service="https://x:9")])
    assert explain.grpc_warnings(t2) == []
    assert h2_services(t2) == {("prod-svc", 80, "http"), ("next-svc", 80, "http")}
    assert preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00") is True
    assert preface(b"PRI * HTTP/2") is None
    assert preface(b"GET / HTTP/1.1\r\n") is False


def test_the_dashboard_shows_grpc_status_per_role() -> None:
    import dataclasses

    from support import M, parse, real_snapshot, resource

    from shadow_addon import dashboard, report, routing
    from shadow_addon.metrics import PRODUCTION, SHADOW

    snap, m = real_snapshot()
    page = parse(dashboard.render(snap))
    assert "gRPC" not in resource(page).text  # no gRPC traffic: no gRPC bars
    for _ in range(3):
        m.record_grpc("api", "api-svc", PRODUCTION, "0")
        m.record_grpc("api-shadow", "api-shadow-svc", SHADOW, "5")
    m.record_grpc("api-shadow", "api-shadow-svc", SHADOW, "0")
    table = routing.build_table([M("api"), M("api-shadow", shadow=True), M("other", prefix="/other/")])
    snap = dataclasses.replace(snap, comparison=tuple(report.comparison(table, m)))
    page = parse(dashboard.render(snap))
    bars = [n for n in resource(page).find_all("div", class_="codes") if "gRPC" in n.text]
    assert [b.attrs["data-role"] for b in bars] == ["production", "shadow"]
    legend = {
        (b.attrs["data-role"], s.attrs["data-code"]): int(s.attrs["data-value"])
        for b in bars
        for s in b.find_all("span", class_="code")
    }
    assert legend == {("production", "OK"): 3, ("shadow", "NOT_FOUND"): 3, ("shadow", "OK"): 1}


def descriptor_set() -> bytes:
    """A FileDescriptorSet, encoded by hand, for `package shop; message Item {string sku = 1; int64 price = 2;
    Tag tag = 3; message Tag {string name = 1; int32 level = 4;}} service Prices {rpc Get(Item) returns (Item);}`."""
    tag = pb((1, b"Tag"), (2, pb((1, b"name"), (3, 1), (5, 9))), (2, pb((1, b"level"), (3, 4), (5, 5))))
    item = pb(
        (1, b"Item"),
        (2, pb((1, b"sku"), (3, 1), (5, 9))),
        (2, pb((1, b"price"), (3, 2), (5, 3))),
        (2, pb((1, b"tag"), (3, 3), (5, 11), (6, b".shop.Item.Tag"))),
        (3, tag),
    )
    service = pb((1, b"Prices"), (2, pb((1, b"Get"), (2, b".shop.Item"), (3, b".shop.Item"))))
    file = pb((1, b"shop.proto"), (2, b"shop"), (4, item), (6, service))
    return pb((1, file))


def test_with_a_descriptor_set_fields_are_named(tmp_path: Path) -> None:
    from shadow_addon.compare import CompareConfig, compare, descriptors

    f = tmp_path / "shop.pb"
    f.write_bytes(descriptor_set())
    d = descriptors.load(str(f))
    assert d.outputs == {"/shop.Prices/Get": ".shop.Item"}
    config = CompareConfig(descriptors=str(f))
    namer = d.namer("/shop.Prices/Get")
    # The tag {4: 65} is the bytes " A": printable text to a reader without the schema, a message with it.
    prod = grpc_reply(grpcwire.frame(pb((1, b"a1"), (2, 10), (3, pb((4, 65))))))
    shadow = grpc_reply(grpcwire.frame(pb((1, b"a1"), (2, 12), (3, pb((4, 66))))))
    unnamed = compare(grpc_reply(prod.body), grpc_reply(shadow.body), CompareConfig())  # type: ignore[arg-type,attr-defined]
    assert unnamed.diffs == ["/0/2: 10 -> 12", '/0/3: " A" -> " B"']
    prod.schema = shadow.schema = namer  # type: ignore[attr-defined]
    c = compare(prod, shadow, config)  # type: ignore[arg-type]
    assert c.diffs == ["/0/price: 10 -> 12", "/0/tag/level: 65 -> 66"]
    assert compare(prod, shadow, CompareConfig(descriptors=str(f), ignore=("/0/price", "/0/tag/level"))).result == (  # type: ignore[arg-type]
        "match"
    )
    assert d.namer("/shop.Prices/Other") is None
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\x0a\x05ab")
    with pytest.raises(ValueError, match="not a FileDescriptorSet"):
        descriptors.load(str(bad))
