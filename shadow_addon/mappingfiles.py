"""The Mapping files: read and checked off the event loop, installed in one assignment, watched for changes.

A request is routed by the old table or the new one, never a mix; a bad reload keeps the last good table.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mitmproxy import exceptions

from . import explain, mappings, routing, selfloop, tablegc
from .metrics import Metrics
from .servicenames import check_names, names_to_resolve
from .words import plural

logger = logging.getLogger("shadow")

WATCH_INTERVAL = 1.0  # s between polls of the Mapping files
WATCH_INTERVAL_ENV = "MITMSHADOW_WATCH_INTERVAL"  # seconds; the tests' mitmdumps poll faster (not an option)
LOAD_GATE_ENV = "MITMSHADOW_LOAD_GATE"  # tests only: a run-time load is held, built, until this file exists
LOAD_GATE_WAIT = 60.0  # s at most
_frozen = False  # gc.freeze() is process-wide: once, at the first start-up
_freeze_tables = False  # set with that freeze: each table installed later is frozen too (tablegc)
# The table last installed in this process, with its source and load result: an addon loaded again by `-s` while
# the proxy serves routes with it until its own load, off the loop, is installed.
_last: tuple[Source, mappings.LoadResult, routing.Table] | None = None

Loaded = tuple[tuple[object, ...], mappings.LoadResult, routing.Table | None]


def watch_interval() -> float:
    """WATCH_INTERVAL, or the environment's MITMSHADOW_WATCH_INTERVAL (0.01..60 s; anything else is ignored)."""
    try:
        v = float(os.environ.get(WATCH_INTERVAL_ENV, ""))
    except ValueError:
        return WATCH_INTERVAL
    return v if 0.01 <= v <= 60 else WATCH_INTERVAL


def files_signature(path: str) -> tuple[object, ...]:
    """What identifies the files' current content: names, stat data and a hash (a same-size rewrite within one
    timestamp tick still counts as a change)."""
    sig: list[object] = []
    try:
        for f in mappings.mapping_files(path):
            st = os.stat(f)
            with open(f, "rb") as fh:
                digest = hashlib.sha256(fh.read(mappings.MAX_FILE_BYTES + 1)).hexdigest()
            sig.append((f, st.st_mtime_ns, st.st_size, st.st_ino, digest))
    except OSError:
        sig.append(("missing", path))
    return tuple(sig)


def read_mappings(source: Source) -> Loaded:
    """Read, validate and build: no mitmproxy state, safe in a thread. The signature is taken first, so a change
    during the read is seen again by the next poll. A shadow at this proxy's own address is an error: it would
    copy its own copies (checked here, since names are resolved)."""
    path = source.path
    signature = files_signature(path) if path else ()
    result = mappings.load_path(path) if path else mappings.LoadResult()
    blocked = result.blocking(source.strict)
    table = routing.build_table(result.mappings, source.overrides, source.ambassador_id) if not blocked else None
    if table is not None and source.listen is not None:
        loops = selfloop.loop_errors(table, source.listen)
        result.errors += loops
        result.file_errors += loops  # a shadow into this proxy stops the load whatever `strict` says
        table = table if not loops else None
    return signature, result, table


def table_warnings(table: routing.Table, source: Source) -> list[str]:
    """What a person should know about a table that loads: logged and shown in /diag and on the dashboard."""
    out = unknown_services(table, source.overrides) + explain.grpc_warnings(table)
    host = explain.host_notice(table, source.keep_host)
    return [*out, host] if host else out


def unknown_services(table: routing.Table, overrides: Sequence[routing.ServiceOverride]) -> list[str]:
    """A `mapping_services` NAME that stands for no Mapping's `service` is almost always a typo, or a Mapping's
    name given where its service was meant: say so, naming the services that do exist."""
    out = []
    services = sorted({m.service for m in table.mappings})
    pairs = {(m.service, m.namespace) for m in table.mappings} if overrides else set()
    for o in overrides:
        if any(mappings.override_matches(o.name, service, namespace) for service, namespace in pairs):
            continue
        named = [m.service for m in table.mappings if m.name == o.name]
        hint = f"; {o.name} is a Mapping's name, its service is {named[0]}" if named else ""
        known = ", ".join(services[:12]) + (", ..." if len(services) > 12 else "") if services else "none"
        out.append(f"mapping_services: {o.name} matches no Mapping's service{hint} (services: {known})")
    return out


def changes(old: routing.Table, new: routing.Table) -> str:
    """What a reload changed, by Mapping `name.namespace`: "2 added (a, b), 1 changed (c)" or "nothing"."""

    def differ(a: mappings.Mapping, b: mappings.Mapping) -> bool:
        # A moved document is no change: `source` is compared out only for the few that differ at all.
        return a != b and dataclasses.replace(a, source="") != dataclasses.replace(b, source="")

    before, after = {m.key: m for m in old.mappings}, {m.key: m for m in new.mappings}
    parts = []
    for word, keys in (
        ("added", [k for k in after if k not in before]),
        ("removed", [k for k in before if k not in after]),
        ("changed", [k for k in after if k in before and differ(after[k], before[k])]),
    ):
        if keys:
            shown = ", ".join(sorted(keys)[:8]) + (", ..." if len(keys) > 8 else "")
            parts.append(f"{len(keys)} {word} ({shown})")
    return ", ".join(parts) or "no Mapping changed"


@dataclass(frozen=True, slots=True)
class Source:
    """Where the Mappings come from and what else a table must pass before it serves."""

    path: str = ""
    overrides: tuple[routing.ServiceOverride, ...] = ()
    listen: selfloop.Listen | None = None  # where this proxy listens: no shadow may point there
    keep_host: bool = True  # the client's Host reaches the hooks (keep_host_header)
    ambassador_id: str = "default"
    strict: bool = False  # any invalid Mapping stops the load


@dataclass(slots=True)
class Prepared:
    """A load worked out off the event loop, up to what only the install (one assignment, log lines) does."""

    source: Source
    signature: tuple[object, ...]
    result: mappings.LoadResult
    table: routing.Table | None
    warnings: list[str] = field(default_factory=list)
    names: dict[tuple[str, int], list[mappings.Mapping]] = field(default_factory=dict)
    old: routing.Table | None = None  # the table `diff` describes the change from
    diff: str = ""


def prepare(source: Source, old: routing.Table | None = None) -> Prepared:
    """Read, validate, build, check and compare with the table now serving (`old`): no mitmproxy state, safe in
    a thread."""
    signature, result, table = read_mappings(source)
    p = Prepared(source, signature, result, table)
    if table is not None:
        p.warnings = table_warnings(table, source)
        p.names = names_to_resolve(table, source.overrides)
        if old is not None:
            p.old, p.diff = old, changes(old, table)  # comparing two large tables takes as long as building one
    return p


def wait_for_gate() -> None:
    """The tests' hook (LOAD_GATE_ENV): hold a built table until the test lets it go, bounded."""
    gate = os.environ.get(LOAD_GATE_ENV)
    if gate:
        with open(gate + ".waiting", "w"):  # tells the test a built table is held here
            pass
    deadline = time.monotonic() + LOAD_GATE_WAIT
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)


def prepare_in_worker(source: Source, old: routing.Table | None) -> Prepared:
    p = prepare(source, old)
    wait_for_gate()
    return p


class MappingFiles:
    """The routing table now serving and how it got there (for /diag)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.table = routing.Table()
        self.loaded: mappings.LoadResult | None = None
        self.loaded_at = 0.0
        self.errors: list[str] = []  # of the last failed load; empty once one succeeds
        self.source = Source()  # of the table serving (or of the failed first load, which the watcher retries)
        self.running = False  # past start-up: errors no longer stop mitmdump
        self._signature: tuple[object, ...] | None = None
        self._installed_path: str | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._wanted: tuple[Source, Callable[[bool], None] | None] | None = None
        self._loader: asyncio.Task[None] | None = None
        self._checked: set[tuple[str, int]] = set()  # service names already checked for resolving
        self._unchecked: dict[tuple[str, int], list[mappings.Mapping]] = {}
        self._checks: set[asyncio.Task[None]] = set()

    def load(self, source: Source, explicit: bool = False) -> bool:
        """Load now, on the calling thread: at start-up, before the proxy serves. Returns success.

        An error is logged (mitmdump then exits with it, no traceback); `explicit` once running (a `--set` with
        no event loop to load on) raises OptionsError instead, and mitmproxy rolls the option back.
        """
        with tablegc.no_full_collection():  # the start-up freeze (`start`) follows: a collection now is wasted
            return self._install(prepare(source), explicit=explicit)

    def request(self, source: Source, done: Callable[[bool], None] | None = None) -> None:
        """Load off the event loop (the proxy serves): read, check and build in one worker thread, then install
        here in one assignment. The latest request wins: a load still running when a newer one comes is dropped.
        `done(ok)` runs on the loop once this request is installed or has failed; a failure is logged and counted
        as a failed watch reload is, and the last good table keeps serving."""
        if self._installed_path is None and _last is not None and _last[0] == source:
            self.source, self.loaded, self.table = _last
            self._installed_path, self.loaded_at = source.path, time.time()
        self._wanted = (source, done)
        if self._loader is None:
            task = asyncio.get_running_loop().create_task(self._load_wanted())
            if not task.done():
                self._loader = task

    @property
    def loading(self) -> bool:
        return self._loader is not None

    async def _load_wanted(self) -> None:
        try:
            while self._wanted is not None:
                (source, done), self._wanted = self._wanted, None
                await self._load_one(source, done)
        finally:
            self._loader = None

    async def _load_one(self, source: Source, done: Callable[[bool], None] | None) -> None:
        tablegc.hold()  # no full collection from the first object built to the freeze
        try:
            try:
                p = await asyncio.to_thread(prepare_in_worker, source, self.table)
            except Exception as e:  # a bug, not a bad file: still no traceback into the proxy
                logger.error("mappings: loading %s failed: %s: %s", source.path, type(e).__name__, e)
                self.metrics.record_reload(False)
                if self._wanted is None:
                    self._done(done, False)
                return
            if self._wanted is not None:  # a newer request came meanwhile: it is loaded instead
                dropped: list[object] = [p.table, p.result]
                del p
                await asyncio.to_thread(tablegc.dismantle, dropped)
                return
            replaced: list[object] = [self.table, self.loaded]
            try:
                ok = self._install(p)
            except Exception as e:  # as above: the last good table keeps serving
                logger.error("mappings: installing %s failed: %s: %s", source.path, type(e).__name__, e)
                self.metrics.record_reload(False)
                ok = False
            count = len(p.result.mappings)
            del p
            if ok and _freeze_tables and tablegc.worth_freezing(count):
                tablegc.freeze()
            self._done(done, ok)
            if ok:  # the old table is freed in the worker thread, piece by piece (it holds no cycles)
                await asyncio.to_thread(tablegc.dismantle, replaced)
            replaced.clear()
        finally:
            tablegc.release()

    @staticmethod
    def _done(done: Callable[[bool], None] | None, ok: bool) -> None:
        if done is None:
            return
        try:
            done(ok)
        except Exception:  # the caller's follow-up must not stop later loads
            logger.exception("mappings: after the load")

    def start(self) -> None:
        global _frozen, _freeze_tables
        self.running = True
        if not _frozen:
            # What start-up built (mitmproxy, the addon, the first table: 10,000 Mappings are ~140,000 objects) lives
            # as long as the process. Frozen, CPython's gen-2 collections, which pause the loop, no longer walk it;
            # a table replaced later is still freed (it holds no reference cycles, so its count drops to zero).
            # Not collected first: that walk of ~210,000 objects (0.1-0.3 s before the first answer) would free
            # ~900 objects of start-up garbage, which stay.
            _frozen = _freeze_tables = True
            gc.freeze()
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        self._check_names()

    def stop(self) -> None:
        self.running = False
        for task in (self._watcher, self._loader):
            if task is not None:
                task.cancel()
        self._watcher = self._loader = None
        self._wanted = None
        for check in self._checks:
            check.cancel()
        self._checks.clear()

    def _check_names(self) -> None:
        """Check, off the event loop, that the services no `mapping_services` entry replaces resolve: one that
        does not would fail every request routed to it. Each name once; at start-up once the loop runs."""
        if not self.running or not self._unchecked:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # configured from outside the event loop: checked when it runs
            return
        names, self._unchecked = self._unchecked, {}
        self._checked.update(names)
        result = self.loaded

        async def check() -> None:
            for line in await check_names(names):
                logger.warning(line)
                if result is not None and result is self.loaded:
                    result.notices.append(line)  # /diag and the dashboard too

        task = loop.create_task(check())
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    def _install(self, p: Prepared, explicit: bool = False) -> bool:
        """Install what `prepare` produced, on the event loop: one assignment of the routing table and its log
        lines (what changed was worked out with the table, off the loop, if that old table is still installed)."""
        errors = p.result.blocking(p.source.strict)
        if errors:
            if self._installed_path is None or p.source.path == self.source.path:
                # The files being watched: a failed read is not retried until they change again.
                self.source, self._signature = p.source, p.signature
            return self._failed(errors, explicit)
        table, result = p.table, p.result
        assert table is not None
        self.source, self._signature = p.source, p.signature
        for n in result.notices:
            logger.info(n)
        for e in result.errors:  # invalid Mappings, left out as Emissary leaves them out (an error would end start-up)
            logger.warning(e)
        for ce in table.errors:
            logger.warning("Mapping %s: %s", ce.mapping, ce.message)
        for m in table.ignored:
            logger.info("Mapping %s: ignored: ambassador_id %s", m.key, ", ".join(m.ambassador_id))
        for w in p.warnings:
            logger.warning(w)
            result.notices.append(w)  # shown in /diag and on the dashboard too
        for w in explain.lonely_shadows(table):  # /diag lists them with the other traps
            logger.warning("mappings: %s", w)
        old, first = self.table, self._installed_path != p.source.path
        self._installed_path = p.source.path
        self.errors = []
        self.table = table  # one assignment: a request sees the old table or the new one, never a mix
        global _last
        _last = (p.source, result, table)
        self.loaded, self.loaded_at = result, time.time()
        self.metrics.config_errors = len(table.errors)
        self.metrics.record_reload(True)
        self._unchecked = {k: v for k, v in p.names.items() if k not in self._checked}
        self._check_names()
        if p.source.path:
            n_shadow = sum(1 for g in table.groups if g.shadow)
            summary = (
                f"{plural(len(table.mappings), 'Mapping')} in {plural(len(table.groups), 'group')} "
                f"({n_shadow} with a shadow)"
            )
            if first:
                logger.info("mappings: %s from %s", summary, p.source.path)
            else:
                diff = p.diff if p.old is old else changes(old, table)
                logger.info("mappings: reloaded %s: %s; now %s", p.source.path, diff, summary)
        return True

    def _failed(self, errors: list[str], explicit: bool) -> bool:
        self.metrics.record_reload(False)
        self.errors = errors
        if explicit and self.running:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise exceptions.OptionsError(errors[0] + more)
        for e in errors:
            logger.error(e)
        if self.running:
            logger.error("mappings: reload failed; the previous configuration keeps serving")
        return False

    async def _watch(self) -> None:
        # A change is loaded as a requested load is (off the loop, one at a time); while one runs, the files are
        # not polled: that load reads them as they are. Nothing may end this task: hot reload would silently stop.
        interval = watch_interval()
        while True:
            await asyncio.sleep(interval)
            source = self.source
            if not source.path or self._loader is not None:
                continue
            try:
                if await asyncio.to_thread(files_signature, source.path) == self._signature:
                    continue
            except Exception as e:
                logger.error("mappings: reload of %s failed: %s: %s", source.path, type(e).__name__, e)
                continue
            if self._loader is None and self.source is source:
                self.request(source)
