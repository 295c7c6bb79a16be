"""The response reader on its own: bytes in, status, body, reuse and caps out (no sockets)."""

from __future__ import annotations

import hashlib

import pytest

from shadow_addon.budget import MemoryBudget
from shadow_addon.mappings import Address
from shadow_addon.reader import MAX_HEAD, MAX_HEADERS, MAX_INTERIM, ReadError, ResponseReader
from shadow_addon.sender import Copy, assemble, sent_fields

LENGTH = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"a": true}'
CHUNKED = (
    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'4;name=value\r\nWiki\r\n5;quoted="a;b"\r\npedia\r\n0\r\nx-checksum: 1\r\nx-other: 2\r\n\r\n'
)
INTERIM = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n" + LENGTH


def read(data: bytes, method: str = "GET", keep: int = 1 << 20, limit: int = 1 << 20, **kw: object) -> ResponseReader:
    r = ResponseReader(**kw)  # type: ignore[arg-type]
    r.start(method, keep, limit)
    assert r.feed(data)
    return r


def failure(data: bytes) -> ReadError:
    r = ResponseReader()
    r.start("GET", 0, 1 << 20)
    with pytest.raises(ReadError) as e:
        r.feed(data)
    return e.value


@pytest.mark.parametrize(
    ("data", "status", "body"),
    [(LENGTH, 200, b'{"a": true}'), (CHUNKED, 201, b"Wikipedia"), (INTERIM, 200, b'{"a": true}')],
)
def test_split_at_every_offset_gives_the_same_response(data: bytes, status: int, body: bytes) -> None:
    for i in range(len(data) + 1):
        r = ResponseReader()
        r.start("GET", 1 << 20, 1 << 20)
        first = r.feed(data[:i])
        assert first is (i == len(data)), i
        assert first or r.feed(data[i:]), i
        assert r.done and (r.status, r.body, r.size) == (status, body, len(body)), i
        assert r.reusable, i


def test_byte_by_byte() -> None:
    r = ResponseReader()
    r.start("GET", 1 << 20, 1 << 20)
    assert [r.feed(bytes([b])) for b in CHUNKED][-1] is True
    assert r.body == b"Wikipedia"


def test_interim_responses_are_skipped_and_counted() -> None:
    r = read(INTERIM)
    assert r.interim == 2 and r.status == 200 and r.headers[0] == (b"content-type", b"application/json")


def test_chunked_with_extensions_and_trailers() -> None:
    r = read(CHUNKED)
    assert (r.status, r.body, r.http_version) == (201, b"Wikipedia", "HTTP/1.1")


@pytest.mark.parametrize("version", [b"HTTP/1.0", b"HTTP/1.1"])
def test_close_delimited_body_ends_at_eof(version: bytes) -> None:
    r = ResponseReader()
    r.start("GET", 1 << 20, 1 << 20)
    assert not r.feed(version + b" 200 OK\r\ncontent-type: text/plain\r\n\r\nhello ")
    assert not r.feed(b"world")
    assert r.eof() and r.body == b"hello world" and not r.reusable


def test_eof_mid_body_is_not_a_response() -> None:
    r = ResponseReader()
    r.start("GET", 1 << 20, 1 << 20)
    assert not r.feed(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort")
    assert not r.eof()


@pytest.mark.parametrize(
    ("connection", "reusable"),
    [
        (b"", True),
        (b"connection: keep-alive\r\n", True),
        (b"connection: close\r\n", False),
        (b"connection: Keep-Alive, CLOSE\r\n", False),
        (b"connection: x-not-close, closed\r\n", True),  # tokens, not substrings
    ],
)
def test_connection_tokens_decide_reuse(connection: bytes, reusable: bool) -> None:
    r = read(b"HTTP/1.1 200 OK\r\n" + connection + b"content-length: 2\r\n\r\nok")
    assert r.reusable is reusable


def test_http10_is_not_kept_alive() -> None:
    assert not read(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok").reusable


def test_a_connection_serves_one_response_after_another() -> None:
    r = ResponseReader()
    for i in range(3):
        r.start("GET", 1 << 20, 1 << 20)
        assert r.feed(LENGTH if i != 1 else CHUNKED) and r.reusable
    assert r.body == b'{"a": true}'


def test_bytes_beyond_the_response_forbid_reuse() -> None:
    assert not read(LENGTH + b"HTTP/1.1 200 OK\r\n").reusable


@pytest.mark.parametrize(
    ("method", "head"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\ncontent-length: 1000\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\ncontent-length: 1000\r\n\r\n"),
    ],
)
def test_responses_without_body(method: str, head: bytes) -> None:
    r = read(head, method)
    assert r.size == 0 and r.body == b"" and r.reusable


@pytest.mark.parametrize(
    "data",
    [
        b"SSH-2.0-OpenSSH_9.0\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokXX",
    ],
)
def test_garbage_is_a_bad_response(data: bytes) -> None:
    assert failure(data).reason == "bad_response"


def test_interim_responses_are_capped() -> None:
    r = ResponseReader()
    r.start("GET", 0, 1 << 20)
    assert not r.feed(b"HTTP/1.1 100 Continue\r\n\r\n" * MAX_INTERIM)
    with pytest.raises(ReadError) as e:
        r.feed(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert e.value.reason == "interim_limit"


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * MAX_HEAD,  # no end of head in sight
        b"HTTP/1.1 103 Early Hints\r\n" + b"link: </a>\r\n" * (MAX_HEADERS + 1) + b"\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"x: 1\r\n" * (MAX_HEADERS + 1) + b"\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1;" + b"e" * MAX_HEAD,  # a chunk line without end
    ],
)
def test_heads_are_capped(data: bytes) -> None:
    assert failure(data).reason == "head_limit"


def test_a_complete_head_too_large_in_one_read_is_refused_by_size_not_parsed_whole() -> None:
    """h11 bounds only incomplete events: handed a complete 60 KB head of 2,000 fields at once, it parsed it all
    before the field cap applied. It now gets a head's worth at a time and refuses it by size."""
    hints = b"HTTP/1.1 103 Early Hints\r\n" + b"link: </style.css>; rel=preload\r\n" * 2000 + b"\r\n"
    e = failure(hints * 3)
    assert e.reason == "head_limit" and f"over {MAX_HEAD} bytes" in str(e)


def test_a_kept_body_is_not_hashed_while_read() -> None:
    """With nothing read past what is kept, hashing while reading is work for nothing: a body cut at the limit
    is not compared, and a kept one is hashed when it is."""
    r = ResponseReader()
    r.start("GET", 1 << 20, 1 << 20, hash_body=True)
    assert r.feed(CHUNKED) and r.body == b"Wikipedia" and r.sha256 == ""


def test_body_past_the_limit_keeps_the_status() -> None:
    r = ResponseReader()
    r.start("GET", 0, 100)
    assert not r.feed(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    assert not r.feed(b"64\r\n" + b"x" * 100 + b"\r\n")  # exactly the limit
    with pytest.raises(ReadError) as e:
        r.feed(b"1\r\nx\r\n")
    assert (e.value.reason, e.value.status) == ("response_limit", 200)


def test_the_keep_size_raises_the_limit_and_the_budget_holds_what_is_kept() -> None:
    budget = MemoryBudget(1000)
    body = b"y" * 120
    r = read(b"HTTP/1.1 200 OK\r\ncontent-length: 120\r\n\r\n" + body, keep=150, limit=100, budget=budget)
    assert r.body == body and r.size == 120 and r.kept_size == 120 and budget.held == 120


def test_whole_body_hashed_while_only_part_is_kept() -> None:
    r = ResponseReader()
    r.start("GET", 4, 1 << 20, hash_body=True)
    assert r.feed(CHUNKED)
    assert r.body == b"Wiki" and r.sha256 == hashlib.sha256(b"Wikipedia").hexdigest()


def test_a_full_budget_stops_keeping() -> None:
    budget = MemoryBudget(10)
    r = ResponseReader(budget)
    r.start("GET", 100, 100)
    with pytest.raises(ReadError) as e:
        r.feed(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n" + b"z" * 50)
    assert e.value.reason == "overload" and budget.held == 0


def test_budget_take_and_release() -> None:
    b = MemoryBudget(10)
    assert b.take(6) and not b.take(5) and b.held == 6
    b.release(6)
    assert b.take(10) and b.held == b.limit


def copy(fields: tuple[tuple[bytes, bytes], ...], body: bytes) -> Copy:
    return Copy("m", "svc", Address("http", "127.0.0.1", 1), "POST", "/u", "svc", fields, body, 1.0)


def test_a_body_with_a_transfer_coding_is_sent_with_it_and_chunked() -> None:
    c = copy(((b"Transfer-Encoding", b"gzip, chunked"), (b"x-a", b"1")), b"GZ")
    assert sent_fields(c) == [(b"Host", b"svc"), (b"x-a", b"1"), (b"transfer-encoding", b"gzip, chunked")]
    assert b"".join(assemble(c)).endswith(b"\r\n\r\n2\r\nGZ\r\n0\r\n\r\n")


def test_a_chunked_only_body_is_sent_with_its_length() -> None:
    c = copy(((b"transfer-encoding", b"chunked"),), b"abc")
    assert sent_fields(c)[-1] == (b"content-length", b"3")
    assert b"".join(assemble(c)).endswith(b"\r\n\r\nabc")


# The fast path (a plain Content-Length answer whose head arrives whole) against h11 reading the same bytes:
# handed over in one read the fast path may take them; with the first byte alone, h11 reads them from the start.
OK = b"HTTP/1.1 200 OK\r\n"
SAME_EITHER_WAY = {
    "plain": (LENGTH, "GET", True),
    "close": (OK + b"Connection: keep-alive, Close\r\ncontent-length: 2\r\n\r\nhi", "GET", True),
    "keep-alive token": (OK + b"connection: keep-alive\r\ncontent-length: 2\r\n\r\nhi", "GET", True),
    "spaces and tabs": (OK + b"X-A:  \t a b \t\r\nX-Empty:\r\nContent-Length:2 \r\n\r\nhi", "GET", True),
    "obs-text": (b"HTTP/1.1 404 Nicht gef\xfcnden\r\nx-b: caf\xe9\r\ncontent-length: 0\r\n\r\n", "GET", True),
    "bytes past the response": (LENGTH + b"HTTP/1.1 200 OK\r\n", "GET", True),
    "empty body, 500": (b"HTTP/1.1 500 \r\ncontent-length: 0\r\n\r\n", "GET", True),
    "204 with a length": (b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n", "GET", False),
    "304 with a length": (b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n", "GET", False),
    "HEAD": (OK + b"content-length: 5000000\r\n\r\n", "HEAD", False),
    "HTTP/1.0": (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nhi", "GET", False),
    "HTTP/1.0 keep-alive": (b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nhi", "GET", False),
    "no reason": (b"HTTP/1.1 200\r\ncontent-length: 2\r\n\r\nhi", "GET", False),
    "two equal lengths": (OK + b"content-length: 2\r\nContent-Length: 2\r\n\r\nhi", "GET", False),
    "a list of lengths": (OK + b"content-length: 2, 2\r\n\r\nhi", "GET", False),
    "two lengths": (OK + b"content-length: 2\r\ncontent-length: 3\r\n\r\nhi!", "GET", False),
    "signed length": (OK + b"content-length: +2\r\n\r\nhi", "GET", False),
    "length and chunked": (
        OK + b"content-length: 99\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        "GET",
        False,
    ),
    "chunked": (CHUNKED, "GET", False),
    "close-delimited": (OK + b"x: 1\r\n\r\nhi", "GET", False),
    "interim first": (INTERIM, "GET", False),
    "obs-fold": (OK + b"x-a: 1\r\n  2\r\ncontent-length: 2\r\n\r\nhi", "GET", False),
    "space before colon": (OK + b"x-a : 1\r\ncontent-length: 2\r\n\r\nhi", "GET", False),
    "NUL in a value": (OK + b"x-a: 1\x002\r\ncontent-length: 2\r\n\r\nhi", "GET", False),
    "bare LF": (b"HTTP/1.1 200 OK\ncontent-length: 2\n\nhi", "GET", False),
    "status 600": (b"HTTP/1.1 600 Odd\r\ncontent-length: 2\r\n\r\nhi", "GET", False),
    "too many fields": (OK + b"x: 1\r\n" * (MAX_HEADERS + 1) + b"content-length: 0\r\n\r\n", "GET", False),
    "length over the limit": (OK + b"content-length: 4194304\r\n\r\n" + b"z" * 100, "GET", True),
    "length of 19 digits": (OK + b"content-length: 1000000000000000000\r\n\r\n", "GET", False),
}


def outcome(data: bytes, method: str, h11_only: bool) -> tuple[object, ...]:
    r = ResponseReader()
    r.start(method, 1 << 20, 1 << 20)
    try:
        done = r.feed(data[:1]) if h11_only else False
        done = r.feed(data[1:] if h11_only else data) or done
    except ReadError as e:
        return ("error", e.reason, e.status, r.h11_used)
    return (done, r.status, r.headers, r.body, r.size, r.reusable, r.h11_used)


@pytest.mark.parametrize("shape", SAME_EITHER_WAY)
def test_the_fast_path_reads_exactly_what_h11_reads(shape: str) -> None:
    data, method, fast = SAME_EITHER_WAY[shape]
    by_h11, either = outcome(data, method, True), outcome(data, method, False)
    assert by_h11[-1] is True  # a head split across reads is always h11's
    assert either[:-1] == by_h11[:-1]
    assert either[-1] is (not fast), "taken by the fast path" if either[-1] is False else "left to h11"


def test_a_length_over_the_limit_is_refused_at_the_head_with_its_status() -> None:
    head = OK + b"content-length: 4194304\r\n\r\n"  # nothing of the body sent: the head decides
    for reads in ([head], [head[:1], head[1:]]):  # the fast path; h11
        r = ResponseReader()
        r.start("GET", 0, 1 << 20)
        with pytest.raises(ReadError) as e:
            for data in reads:
                r.feed(data)
        assert (e.value.reason, e.value.status, r.size) == ("response_limit", 200, 0), len(reads)


def test_fast_path_body_across_reads_then_the_next_response_on_the_same_connection() -> None:
    r = ResponseReader()
    for i in range(3):
        r.start("GET", 1 << 20, 1 << 20)
        assert not r.feed(OK + b"content-length: 10\r\n\r\n01234")
        assert not r.feed(b"567")
        assert r.feed(b"89")
        assert (r.body, r.reusable, r.h11_used) == (b"0123456789", True, False), i
        r.start("GET", 1 << 20, 1 << 20)  # then one h11 must read: it knows of no earlier exchange
        assert r.feed(CHUNKED) and r.h11_used and r.body == b"Wikipedia" and r.reusable, i


def test_a_fast_path_body_cut_short_by_the_close_is_not_an_answer() -> None:
    r = ResponseReader()
    r.start("GET", 1 << 20, 1 << 20)
    assert not r.feed(OK + b"content-length: 10\r\n\r\n01234")
    assert r.eof() is False and not r.done


@pytest.mark.parametrize("data", [LENGTH, CHUNKED, INTERIM], ids=["length", "chunked", "interim"])
def test_an_answer_no_longer_wanted_at_its_head_is_read_to_its_end_unkept_and_unhashed(data: bytes) -> None:
    """Asked once, at the final head and before any body byte: an answer whose comparison was given up meanwhile
    is drained (its size counted, its end found) without a byte kept, taken from the budget or hashed."""
    budget = MemoryBudget(1 << 20)
    asked: list[tuple[int, int | None]] = []

    def at_head(status: int, length: int | None) -> tuple[int, bool]:
        asked.append((status, length))
        return 0, False

    r = ResponseReader(budget)
    r.start("GET", 1 << 20, 1 << 20, hash_body=True, at_head=at_head)
    for i in range(len(data)):  # byte by byte: the h11 path as well as the fast one
        done = r.feed(data[i : i + 1])
    assert done and r.reusable
    assert asked == ([(201, None)] if data is CHUNKED else [(200, 11)])
    assert r.body == b"" and r.kept_size == 0 and budget.held == 0 and r.sha256 == ""
    assert r.size == (9 if data is CHUNKED else 11)
    r.start("GET", 1 << 20, 1 << 20, hash_body=True, at_head=lambda status, length: None)
    assert r.feed(LENGTH) and r.body == b'{"a": true}' and budget.held == 11  # None: read as asked


def test_an_answer_wanted_at_its_head_may_be_kept_for_another_reader_only() -> None:
    r = ResponseReader()
    r.start("GET", 1 << 20, 1 << 20, hash_body=True, at_head=lambda status, length: (4, False))
    assert r.feed(CHUNKED) and r.body == b"Wiki" and r.size == 9 and r.sha256 == ""


@pytest.mark.parametrize("keep", [0, 4, 1 << 20])
def test_reads_handed_over_as_views_of_one_reused_buffer_keep_nothing_of_it(keep: int) -> None:
    """The connection reads into one buffer shared by all and hands the reader a view of each read: what the
    reader keeps (the body, the hash) must not change when that buffer is overwritten by the next read."""
    body = bytes(range(256)) * 40
    data = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    shared = bytearray(1000)
    view = memoryview(shared)
    r = ResponseReader()
    r.start("GET", keep, 1 << 20, hash_body=True)
    done = False
    for i in range(0, len(data), 1000):
        piece = data[i : i + 1000]
        shared[: len(piece)] = piece
        done = r.feed(view[: len(piece)])
        shared[:] = b"\xff" * len(shared)  # the next read overwrites it
    assert done and r.size == len(body) and r.body == body[:keep]
    assert r.sha256 == (hashlib.sha256(body).hexdigest() if keep < len(body) else "")
