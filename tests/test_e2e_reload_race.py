"""Mapping files rewritten while requests flow: every request is routed by one complete, valid configuration.

What the product guarantees: a reload reads each file as it is at that moment; if anything in it is invalid (a
file caught half-written included) the reload fails and the previous table keeps serving; a successful reload
swaps the whole table in one assignment, so a request sees the old table or the new one, never a mix.

What it cannot guarantee: that a file caught half-written is invalid. An empty file, or one cut at a document
boundary or inside a plain scalar, is valid YAML with less in it (tests/test_hostile_mappings.py shows such cuts).
Writers should replace files atomically (write a temporary file, rename it over the old one). This test
therefore writes each file as one flow-style document, whose every strict, non-empty prefix is a YAML error, and
part-writes it in place without ever leaving it empty: every state a reader can catch is either a complete
generation or an error, and the assertions check exactly that nothing else was ever served.

Detecting a mix: generation g routes /a/ to service alpha-(g%3) adding `x-gen: g` to the request and the
response, with a shadow Mapping in the same document sending copies to shadow-(g%3); /b/ goes to beta-(g%3) the
same way from b.yaml. A service that receives a request whose x-gen disagrees with it, a copy whose generation
is not its production's, a generation that goes backwards, or a request that falls through to the reverse
target would each be a request routed by something other than one complete configuration.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from support import WATCH_INTERVAL, Proxy, Upstream, metric_sum, metrics_of, wait_until

GENERATIONS = 20
KINDS = 3  # services per prefix, cycled through by generation
OBSERVED_EVERY = 4  # every 4th generation waits until the proxy has refused its half-written a.yaml
# The writer's pauses, in watch intervals (support.WATCH_INTERVAL, 50 ms): a write lands within a poll, across
# one or across several, so reloads catch one file new, both, or a half-written one.
PAUSE = float(WATCH_INTERVAL)


def mapping_doc(name: str, prefix: str, service: str, g: int, shadow: bool = False) -> dict[str, object]:
    spec: dict[str, object] = {"prefix": prefix, "service": service}
    if shadow:
        spec["shadow"] = True
    else:
        spec["add_request_headers"] = {"x-gen": f"{g:04d}"}
        spec["add_response_headers"] = {"x-gen": f"{g:04d}"}
    return {"apiVersion": "getambassador.io/v3alpha1", "kind": "Mapping", "metadata": {"name": name}, "spec": spec}


def a_text(g: int) -> str:
    """One flow-style document (a List): its strict prefixes are all unclosed, hence errors."""
    items = [
        mapping_doc("a", "/a/", f"alpha-{g % KINDS}", g),
        mapping_doc("a-copy", "/a/", f"shadow-{g % KINDS}", g, shadow=True),
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items}) + "\n"


def b_text(g: int) -> str:
    return json.dumps(mapping_doc("b", "/b/", f"beta-{g % KINDS}", g)) + "\n"


def write_renamed(path: Path, text: str) -> None:
    """The recommended way: a temporary file (not *.yaml, so never loaded), renamed over the old one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_in_two_steps(path: Path, text: str, between: Callable[[], None]) -> None:
    """A slow writer editing in place: the file holds a strict prefix (of the old, then of the new content) until
    the second write. It is cut first, never emptied: an empty file would be a valid configuration."""
    data = text.encode()
    half = len(data) // 2
    with open(path, "r+b") as f:
        f.truncate(half)
        f.flush()
        f.seek(0)
        f.write(data[:half])
        f.flush()
        between()
        f.write(data[half:])
        f.flush()


@dataclass
class Answer:
    prefix: str
    status: int
    gen: int | None
    served_by: str | None


class Client(threading.Thread):
    """Requests /a/ and /b/ in pairs on one keep-alive connection until stopped (bounded in count and time)."""

    def __init__(self, port: int, max_pairs: int = 20_000, max_seconds: float = 60.0) -> None:
        super().__init__(daemon=True)
        self.port, self.max_pairs, self.max_seconds = port, max_pairs, max_seconds
        self.answers: list[Answer] = []
        self.failures: list[str] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            for _ in range(self.max_pairs):
                if self.stopping.is_set() or time.monotonic() > deadline:
                    break
                for prefix in ("/a/", "/b/"):
                    try:
                        conn.request("GET", prefix + "x")
                        r = conn.getresponse()
                        body = r.read()
                    except (OSError, http.client.HTTPException) as e:
                        self.failures.append(f"{prefix}: {e!r}")
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                        continue
                    gen = r.getheader("x-gen")
                    try:
                        served_by = json.loads(body).get("name")
                    except ValueError:
                        served_by = None
                    with self.lock:
                        self.answers.append(Answer(prefix, r.status, int(gen) if gen else None, served_by))
                self.stopping.wait(0.005)  # leave the two cores some room for the proxy and the writer
        finally:
            conn.close()

    def count(self) -> int:
        with self.lock:
            return len(self.answers)


def gens_seen_by(u: Upstream) -> list[int]:
    with u.lock:
        return [int(s.header("x-gen") or -1) for s in u.seen]


def test_rewrites_during_traffic_never_serve_a_partial_configuration(tmp_path: Path, upstream, proxy) -> None:
    rng = random.Random(20240611)  # fixed: the same schedule of pauses on every run
    prod = upstream("prod")
    alpha = [upstream(f"alpha-{k}") for k in range(KINDS)]
    beta = [upstream(f"beta-{k}") for k in range(KINDS)]
    copies = [upstream(f"shadow-{k}") for k in range(KINDS)]
    d = tmp_path / "mappings"
    d.mkdir()
    (d / "a.yaml").write_text(a_text(0))
    (d / "b.yaml").write_text(b_text(0))
    services = [f"{u.name}={u.address}" for u in alpha + beta + copies]
    p: Proxy = proxy(f"http://{prod.address}", sets={"mappings": str(d), "mapping_services": services})

    client = Client(p.port)
    client.start()
    observed = 0
    try:
        assert wait_until(lambda: client.count() >= 10, 10), client.failures
        for g in range(1, GENERATIONS + 1):
            if g % OBSERVED_EVERY == 0:
                # Hold a.yaml half-written until the proxy has tried it and refused it: proof that a partial
                # file was read, while the client keeps sending (and must keep getting generation g-1).
                before = metric_sum(metrics_of(p), "shadow_config_reloads_total", result="failure")

                def refused(before: float = before) -> None:
                    ok = wait_until(
                        lambda: metric_sum(metrics_of(p), "shadow_config_reloads_total", result="failure") > before,
                        10,
                        0.1,
                    )
                    assert ok, p.log

                write_in_two_steps(d / "a.yaml", a_text(g), refused)
                observed += 1
            elif g % 2:
                write_in_two_steps(d / "a.yaml", a_text(g), lambda: time.sleep(rng.uniform(0.1, 1.5) * PAUSE))
            else:
                write_renamed(d / "a.yaml", a_text(g))
            time.sleep(rng.uniform(0.0, 1.0) * PAUSE)  # a and b land apart: sometimes in one reload, sometimes in two
            if g % 3:
                write_in_two_steps(d / "b.yaml", b_text(g), lambda: time.sleep(rng.uniform(0.1, 1.5) * PAUSE))
            else:
                write_renamed(d / "b.yaml", b_text(g))
            time.sleep(rng.uniform(0.5, 2.5) * PAUSE)
        # The final state serves the final generation on both prefixes.
        latest: dict[str, int | None] = {}

        def final_served() -> bool:
            with client.lock:
                for a in client.answers[-20:]:
                    latest[a.prefix] = a.gen
            return latest.get("/a/") == GENERATIONS and latest.get("/b/") == GENERATIONS

        assert wait_until(final_served, 10, 0.1), latest
    finally:
        client.stopping.set()
        client.join(15)
    assert not client.is_alive()

    answers = list(client.answers)
    assert client.failures == []
    assert len(answers) > 100  # traffic flowed throughout the rewrites
    assert observed == GENERATIONS // OBSERVED_EVERY
    # Nothing ever fell through to the reverse target: no request met a table without its Mapping.
    assert prod.count() == 0
    last = {"/a/": 0, "/b/": 0}
    for a in answers:
        service = "alpha" if a.prefix == "/a/" else "beta"
        assert a.status == 200 and a.gen is not None, a
        assert 0 <= a.gen <= GENERATIONS, a
        # The Mapping that routed it is one generation's, whole: its service and its header agree.
        assert a.served_by == f"{service}-{a.gen % KINDS}", a
        # Tables only move forward: a newer generation, once served, is never followed by an older one.
        assert a.gen >= last[a.prefix], (a, last)
        last[a.prefix] = a.gen
    # Server side: each service only ever got requests of the generations that name it.
    for k, u in enumerate(alpha + beta):
        assert all(g % KINDS == k % KINDS for g in gens_seen_by(u)), (u.name, gens_seen_by(u))
    # Copies: the shadow Mapping sits in the same document as the production one, so a copy's generation (the
    # header production added) names its shadow service too; a copy from a mixed table would not.
    n_a = sum(1 for a in answers if a.prefix == "/a/")
    assert wait_until(lambda: sum(u.count() for u in copies) >= n_a, 10), (n_a, [u.count() for u in copies])
    for k, u in enumerate(copies):
        assert all(g % KINDS == k for g in gens_seen_by(u)), (u.name, gens_seen_by(u))
    seen_gens = {a.gen for a in answers}
    assert {0, GENERATIONS} <= seen_gens  # the first and the last table both served (how many between is timing)
    m = metrics_of(p)
    assert metric_sum(m, "shadow_config_reloads_total", result="failure") >= observed
    assert "Traceback" not in p.log
