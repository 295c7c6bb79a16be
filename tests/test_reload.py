"""Run-time Mapping loads: off the event loop in one worker thread, the latest request wins, a failure keeps the
last good table, and the table a load builds stays out of the cycle collector's walks."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from pathlib import Path

import pytest
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons
from support import loaded, mapping, write_mappings

from shadow_addon import mappingfiles, routing, tablegc
from shadow_addon.mappingfiles import MappingFiles, Source
from shadow_addon.metrics import Metrics
from shadow_addon.shadow import Shadow


class Gate:
    """Holds each load in the worker thread, once built, until the test opens it (bounded waits)."""

    def __init__(self) -> None:
        self.reached = threading.Semaphore(0)
        self.open = threading.Event()

    def __call__(self) -> None:
        self.reached.release()
        assert self.open.wait(30), "the test never opened the gate"

    async def wait_reached(self) -> None:
        assert await asyncio.to_thread(self.reached.acquire, True, 30), "no load reached the gate"


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Gate:
    g = Gate()
    monkeypatch.setattr(mappingfiles, "wait_for_gate", g)
    yield g
    g.open.set()


def labels(files: MappingFiles) -> list[str]:
    return [g.label for g in files.table.groups]


def files_with(tmp_path: Path, prefix: str) -> tuple[MappingFiles, Path]:
    m = write_mappings(tmp_path / "m.yaml", mapping("a", prefix=prefix, service="127.0.0.1:9"))
    files = MappingFiles(Metrics())
    assert files.load(Source(str(m)))
    files.running = True
    return files, m


async def test_the_loop_keeps_serving_the_old_table_while_the_worker_loads(tmp_path: Path, gate: Gate) -> None:
    files, _ = files_with(tmp_path, "/old/")
    new = write_mappings(tmp_path / "new.yaml", mapping("a", prefix="/new/", service="127.0.0.1:9"))
    results: list[bool] = []
    files.request(Source(str(new)), results.append)
    await gate.wait_reached()  # built, held in the worker thread
    for _ in range(3):  # the loop turns meanwhile, and routes with the old table
        await asyncio.sleep(0)
        assert labels(files) == ["/old/"] and files.loading and results == []
    gate.open.set()
    await loaded(files)
    assert labels(files) == ["/new/"] and results == [True] and files.source.path == str(new)
    assert files.metrics.reloads == {"success": 2}


async def test_the_latest_request_wins(tmp_path: Path, gate: Gate) -> None:
    files, _ = files_with(tmp_path, "/old/")
    b = write_mappings(tmp_path / "b.yaml", mapping("b", prefix="/b/", service="127.0.0.1:9"))
    c = write_mappings(tmp_path / "c.yaml", mapping("c", prefix="/c/", service="127.0.0.1:9"))
    done: list[tuple[str, bool]] = []
    files.request(Source(str(b)), lambda ok: done.append(("b", ok)))
    await gate.wait_reached()  # b is built while c is asked for
    files.request(Source(str(c)), lambda ok: done.append(("c", ok)))
    gate.open.set()
    await loaded(files)
    assert labels(files) == ["/c/"] and done == [("c", True)]  # b was never installed
    assert files.metrics.reloads == {"success": 2}


async def test_a_failed_load_keeps_the_last_good_table(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files, good = files_with(tmp_path, "/a/")
    bad = write_mappings(tmp_path / "bad.yaml", mapping("x", prefix="/x/"))
    results: list[bool] = []
    files.request(Source(str(bad), strict=True), results.append)
    await loaded(files)
    assert results == [False] and labels(files) == ["/a/"] and files.source.path == str(good)
    assert files.errors == [f"{bad} doc 1 (Mapping x.default): service is required"]
    assert files.metrics.reloads == {"success": 1, "failure": 1}
    assert f"{bad} doc 1 (Mapping x.default): service is required" in caplog.text
    assert "reload failed; the previous configuration keeps serving" in caplog.text


async def test_a_run_time_load_freezes_the_new_table_and_frees_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen: list[routing.Table] = []
    files, m = files_with(tmp_path, "/a/")
    monkeypatch.setattr(mappingfiles, "_freeze_tables", True)  # as after mitmdump's start-up freeze
    monkeypatch.setattr(tablegc, "freeze", lambda: frozen.append(files.table))
    monkeypatch.setattr(tablegc, "FREEZE_AT", 1)  # this small table stands for a large one
    old = weakref.ref(files.table.groups[0].matcher.path_test)
    write_mappings(m, mapping("a", prefix="/b/", service="127.0.0.1:9"))
    files.request(Source(str(m)))
    await loaded(files)
    assert frozen == [files.table] and labels(files) == ["/b/"]
    assert old() is None  # the old table went by its reference count, no collection needed
    m.write_text("kind: [")
    files.request(Source(str(m)))
    await loaded(files)
    assert frozen == [files.table]  # a failed load froze nothing


async def test_a_small_table_is_not_frozen_at_a_run_time_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Freezing also freezes what the requests in flight hold: only a table whose walk would be a pause is worth it."""
    frozen: list[routing.Table] = []
    files, m = files_with(tmp_path, "/a/")
    monkeypatch.setattr(mappingfiles, "_freeze_tables", True)
    monkeypatch.setattr(tablegc, "freeze", lambda: frozen.append(files.table))
    monkeypatch.setattr(tablegc, "FREEZE_AT", 3)
    write_mappings(
        m, mapping("a", prefix="/b/", service="127.0.0.1:9"), mapping("c", prefix="/c/", service="127.0.0.1:9")
    )
    files.request(Source(str(m)))
    await loaded(files)
    assert sorted(labels(files)) == ["/b/", "/c/"] and frozen == []
    write_mappings(m, *(mapping(n, prefix=f"/{n}/", service="127.0.0.1:9") for n in "abc"))
    files.request(Source(str(m)))
    await loaded(files)
    assert frozen == [files.table]


def test_full_collections_are_held_off_while_a_table_is_built_and_frozen() -> None:
    before = gc.get_threshold()
    tablegc.hold()
    tablegc.hold()  # two builds at once (a watch reload and a requested one): the last release restores
    assert gc.get_threshold() == (before[0], min(before[1], tablegc.YOUNG_ROUNDS), tablegc.NO_FULL)
    tablegc.release()
    assert gc.get_threshold()[2] == tablegc.NO_FULL
    tablegc.release()
    assert gc.get_threshold() == before


def test_a_table_holds_no_reference_cycles(tmp_path: Path) -> None:
    """What `gc.freeze` of a table relies on: once replaced, it is freed by reference counts alone."""
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("a", prefix="/a/", service="a:80", rewrite="/v1/", add_request_headers={"x-a": "1"}),
        mapping("a-shadow", prefix="/a/", service="s:80", shadow=True, weight=10),
        mapping("r", prefix="/r/[0-9]+", prefix_regex=True, service="r", headers={"x-h": "v"}),
        mapping("c", prefix="/C/", service="c", case_sensitive=False, host="h.example"),
        mapping("d", prefix="/d/", service="d", host_redirect=True),
        mapping("e", prefix="/e/", service="e", regex_rewrite={"pattern": "/e/(.*)", "substitution": "/\\1"}),
    )
    source = Source(str(m))
    mappingfiles.prepare(source)  # compiled patterns and caches exist before the count
    gc.collect()
    gc.disable()
    try:
        p = mappingfiles.prepare(source)
        assert p.table is not None and len(p.table.groups) == 5
        first = weakref.ref(p.table.groups[0].matcher.path_test)
        del p
        assert first() is None
        assert gc.collect() == 0  # nothing the build made was left in a cycle
    finally:
        gc.enable()


def test_dismantle_frees_what_it_is_handed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mappingfiles, "_last", None)  # restored after the test
    files, _ = files_with(tmp_path, "/a/")
    mappingfiles._last = None  # the process's last table, kept for an addon loaded again: not this test's point
    held: list[object] = [files.table, files.loaded]
    group = weakref.ref(files.table.groups[0].matcher.path_test)
    files.table, files.loaded = routing.Table(), None
    tablegc.dismantle(held)
    assert held == [] and group() is None


async def test_an_addon_loaded_again_while_the_proxy_serves_loads_off_the_loop(tmp_path: Path) -> None:
    """`-s` hot reload: a new addon whose first `configure` comes while mitmproxy's proxyserver runs."""
    m = write_mappings(tmp_path / "m.yaml", mapping("a", prefix="/a/", service="a"))
    ps = Proxyserver()
    sh = Shadow()
    with taddons.context(sh, ps) as tctx:
        ps.is_running = True
        tctx.configure(sh, mappings=str(m))
        assert sh.files.loading and sh.table.groups == ()
        await loaded(sh.files)
        assert [g.label for g in sh.table.groups] == ["/a/"]


async def test_an_addon_loaded_again_routes_with_the_table_serving_until_its_own_load(
    tmp_path: Path, gate: Gate
) -> None:
    """`-s` hot reload makes a new addon: until its load (off the loop) is installed, it routes with the table
    the process was serving from the same files, rather than with none."""
    first, m = files_with(tmp_path, "/a/")
    again = MappingFiles(Metrics())
    again.request(Source(str(m)))
    assert again.table is first.table and labels(again) == ["/a/"]  # at once, before the worker has run
    await gate.wait_reached()
    gate.open.set()
    await loaded(again)
    assert labels(again) == ["/a/"] and again.table is not first.table
    other = write_mappings(tmp_path / "other.yaml", mapping("o", prefix="/o/", service="127.0.0.1:9"))
    fresh = MappingFiles(Metrics())
    fresh.request(Source(str(other)))  # other files: nothing to route with until they are loaded
    assert fresh.table.groups == ()
    await loaded(fresh)
    assert labels(fresh) == ["/o/"]


async def test_the_watcher_loads_through_the_same_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mappingfiles, "_frozen", True)  # gc.freeze is mitmdump's start-up, not the test process's
    monkeypatch.setenv(mappingfiles.WATCH_INTERVAL_ENV, "0.01")
    files, m = files_with(tmp_path, "/a/")
    seen: list[bool] = []
    original = files.request

    def request(source: Source, done: object = None) -> None:
        seen.append(files.loading)
        original(source)

    monkeypatch.setattr(files, "request", request)
    files.start()
    try:
        write_mappings(m, mapping("a", prefix="/b/", service="127.0.0.1:9"))
        for _ in range(500):  # bounded: 5 s
            if labels(files) == ["/b/"]:
                break
            await asyncio.sleep(0.01)
        assert labels(files) == ["/b/"] and seen == [False]  # one request, none while a load ran
    finally:
        files.stop()
