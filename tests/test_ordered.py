"""A replay's pairs kept for judging in the capture's order (`compare.ordered`): written only once no pair before
them is waiting, read back in order, merged across processes by position; the replies of pairs that differed kept
whole, as plain data, in a file beside them (what is held in memory is small whatever the bodies)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from shadow_addon.compare.config import CompareConfig
from shadow_addon.compare.ordered import BATCH, CaptureOrder, Compared, merged, pack, read, unpack
from shadow_addon.compare.pairing import Pairing
from shadow_addon.compare.reply import Reply
from shadow_addon.compare.result import Comparison, Difference
from shadow_addon.metrics import Metrics


def pair(position: int, result: str = "match") -> Compared:
    return Compared(position, "m", ("GET", f"/x/{position}", ()), {"path": f"/x/{position}"}, Comparison(result), 0.0)  # type: ignore[arg-type]


def test_pairs_are_written_once_none_before_them_waits_and_read_in_the_captures_order() -> None:
    order = CaptureOrder()
    try:
        for p in (3, 1, 2):
            order.add(pair(p))
        order.release(2)  # pair 2 still waits: only 1 may be written
        assert order.written == 1
        order.add(pair(5))
        order.release(5)
        assert order.written == 3
        order.add(pair(4))
        order.finish()
        assert [c.position for c in order.compared()] == [1, 2, 3, 4, 5]
    finally:
        order.close()


def test_several_processes_pairs_merge_by_position(tmp_path: Path) -> None:
    parts = []
    for k, positions in enumerate(([1, 4, 6], [2, 3, 7], [5])):
        order = CaptureOrder(str(tmp_path / f"part-{k}"))
        for p in positions:
            order.add(pair(p))
        order.finish()
        order.close()
        parts.append(read(str(tmp_path / f"part-{k}")))
    assert [c.position for c in merged(parts)] == [1, 2, 3, 4, 5, 6, 7]


def test_a_packed_reply_is_whole_and_parses_afresh() -> None:
    body = b'{"a": 1, "b": [1, 2, 3]}'
    r = Reply.of(200, [(b"content-type", b"application/json")], body)
    assert r.parsed() == {"a": 1, "b": [1, 2, 3]}  # its parse cached in this process
    back = unpack(pack(r))
    assert back is not None and back.parsed() == {"a": 1, "b": [1, 2, 3]}
    assert (back.status, back.headers, back.body, back.body_sha256) == (r.status, r.headers, r.body, r.body_sha256)
    assert unpack(pack(None)) is None


def test_pairs_written_in_batches_come_back_whole_and_in_order(tmp_path: Path) -> None:
    """Pairs are pickled BATCH at a time: a capture of several batches and a part, matches and mismatches with
    their replies, reads back pair for pair, here (`compared`) and in another process (`read`)."""
    n = 3 * BATCH + 7
    body = b"x" * 100_000  # held on disk, not with the pairs waiting in memory
    here, there = CaptureOrder(), CaptureOrder(str(tmp_path / "part"))
    try:
        for order in (here, there):
            for p in range(1, n + 1):
                c = pair(p, "mismatch" if p % 5 == 0 else "match")
                if p % 5 == 0:
                    c.production = Reply.of(200, [(b"content-type", b"text/plain")], body + str(p).encode())
                    c.shadow = Reply.of(200, [(b"content-type", b"text/plain")], str(p).encode())
                order.add(c)
                assert c.production is None and c.shadow is None  # written as the pair is added
                if p > 1:
                    order.release(p)  # the pair before the last one waits
            assert order.written == n - 1
            order.finish()
        for back in (list(here.compared()), list(read(str(tmp_path / "part")))):
            assert [c.position for c in back] == list(range(1, n + 1))
            assert [c.result.result for c in back] == ["mismatch" if p % 5 == 0 else "match" for p in range(1, n + 1)]
            assert all((c.shadow is not None) == (c.position % 5 == 0) for c in back)
            for c in back[4::5]:  # each pair with its own replies
                assert c.production is not None and c.production.body == body + str(c.position).encode()
                assert c.shadow is not None and c.shadow.body == str(c.position).encode()
    finally:
        here.close()
        there.close()


def test_pairs_released_together_across_a_batch_are_all_written() -> None:
    """A late answer holds many pairs; once it comes, one release writes them all, across batch boundaries."""
    n = 2 * BATCH + 10
    order = CaptureOrder()
    try:
        for p in range(2, n + 1):
            order.add(pair(p))
        order.release(1)  # pair 1 still waits: nothing goes
        assert order.written == 0
        order.add(pair(1))
        order.release(None)
        order.finish()
        assert order.written == n
        assert [c.position for c in order.compared()] == list(range(1, n + 1))
    finally:
        order.close()


def _pairing() -> Pairing:
    return Pairing(Metrics(), CompareConfig())


def _noisy(position: int, samples: list[list[str]]) -> Compared:
    c = pair(position, "noise")
    c.result = Comparison("noise", noisy=["/ts"], differences=(Difference("/ts", "value", noise=True),))
    c.samples = samples
    return c


def test_every_noise_sample_is_counted_before_the_first_pair_is_judged() -> None:
    """The first pair differs in `ts`, learned noise, before any sample showed production's own `ts` varying (the
    second answer to its request, later in the capture, did): judged, it is noise, as the later pair is."""
    order = CaptureOrder()
    try:
        order.add(_noisy(1, []))
        order.add(_noisy(2, [["/ts"]]))
        order.finish()
        assert order.sampled == 1
        reads: list[bool] = []

        def pairs(replies: bool) -> Iterator[Compared]:
            reads.append(replies)
            return order.compared(replies)

        judged = _pairing()
        judged.judge_in_order(pairs, sampled=True)
        assert reads == [False, True]  # the samples first, without the replies
        assert judged.metrics.compare_counts() == {"m": {"noise": 2}}

        # Told no pair has a sample, the judge does not look for them: production's `ts` was never seen to vary.
        reads.clear()
        late = _pairing()
        late.judge_in_order(pairs, sampled=False)
        assert reads == [True]
        assert late.metrics.compare_counts() == {"m": {"mismatch": 2}}
    finally:
        order.close()


def test_a_pair_that_differed_is_compared_again_only_if_noise_was_learned_after_it() -> None:
    """Noise sets only grow: a pair compared with as many fields known as there are at the end was compared with
    the same set, and comparing it again would give the same; one compared with fewer is compared again."""
    production = Reply.of(200, [(b"content-type", b"application/json")], b'{"ts": 1, "price": 10}')
    shadow = Reply.of(200, [(b"content-type", b"application/json")], b'{"ts": 2, "price": 10}')
    order = CaptureOrder()
    try:
        for position, known in ((1, 0), (2, 1)):
            c = pair(position, "mismatch")
            c.noise, c.production, c.shadow = known, production, shadow
            order.add(c)
        order.finish()
        p = _pairing()
        p.learner.teach({"m": [("path", ("ts",))]})  # one field known at the end
        again: list[str] = []
        real = p._again

        def counted(mapping: str, path: str | None, a: Reply, b: Reply) -> Comparison:
            again.append(str(path))
            return real(mapping, path, a, b)

        p._again = counted  # type: ignore[method-assign]
        p.judge_in_order(order.compared, sampled=False)
        assert again == ["/x/1"]  # the pair compared before `ts` was known
    finally:
        order.close()
