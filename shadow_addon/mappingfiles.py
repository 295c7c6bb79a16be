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
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from mitmproxy import exceptions

from . import explain, mappings, routing, selfloop
from .metrics import Metrics
from .words import plural

logger = logging.getLogger("shadow")

WATCH_INTERVAL = 1.0  # s between polls of the Mapping files
WATCH_INTERVAL_ENV = "MITMSHADOW_WATCH_INTERVAL"  # seconds; the tests' mitmdumps poll faster (not an option)
RESOLVE_TIMEOUT = 3.0  # s the check of service names waits for them to resolve
RESOLVE_MOST = 32  # service names checked per load
_frozen = False  # gc.freeze() is process-wide: once, at the first start-up

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


def unknown_services(table: routing.Table, overrides: Sequence[routing.ServiceOverride]) -> list[str]:
    """A `mapping_services` NAME that stands for no Mapping's `service` is almost always a typo, or a Mapping's
    name given where its service was meant: say so, naming the services that do exist."""
    out = []
    services = sorted({m.service for m in table.mappings})
    for o in overrides:
        if any(mappings.override_matches(o.name, m.service, m.namespace) for m in table.mappings):
            continue
        named = [m.service for m in table.mappings if m.name == o.name]
        hint = f"; {o.name} is a Mapping's name, its service is {named[0]}" if named else ""
        known = ", ".join(services[:12]) + (", ..." if len(services) > 12 else "") if services else "none"
        out.append(f"mapping_services: {o.name} matches no Mapping's service{hint} (services: {known})")
    return out


def names_to_resolve(
    table: routing.Table, overrides: Sequence[routing.ServiceOverride]
) -> dict[tuple[str, int], list[mappings.Mapping]]:
    """The (host, port) of every service no `mapping_services` entry replaces, given by name (an IP address needs
    no resolving), with the Mappings that use it."""
    out: dict[tuple[str, int], list[mappings.Mapping]] = {}
    for m in table.mappings:
        if any(mappings.override_matches(o.name, m.service, m.namespace) for o in overrides):
            continue
        a = table.addresses[m.key]
        if a.host.lower() == "localhost" or selfloop.addresses(a.host, resolve_names=False):
            continue
        out.setdefault((a.host, a.port), []).append(m)
    return out


def unresolved_line(host: str, users: Sequence[mappings.Mapping], why: str) -> str:
    """The warning for a service name that does not resolve, with the option that fixes it."""
    m = users[0]
    name = host.removesuffix(f".{m.namespace}") if "." in host else host
    keys = ", ".join(u.key for u in users[:4]) + (", ..." if len(users) > 4 else "")
    return (
        f"mappings: service {m.service} (Mapping {keys}) does not resolve ({why}) and no mapping_services entry "
        f"names it: its requests will fail; point it at a local process with --set mapping_services={name}=HOST:PORT"
    )


def _resolve_in_thread(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[str | None], host: str, port: int) -> None:
    """Resolve on a daemon thread (getaddrinfo cannot be interrupted; a hung resolver must not delay exit)."""

    def run() -> None:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            why: str | None = None
        except (OSError, UnicodeError, ValueError) as e:
            why = getattr(e, "strerror", None) or str(e) or type(e).__name__
        try:
            loop.call_soon_threadsafe(lambda: None if fut.done() else fut.set_result(why))
        except RuntimeError:  # the loop has closed: mitmdump is exiting, and nobody waits for the answer
            pass

    threading.Thread(target=run, name=f"resolve {host}", daemon=True).start()


async def check_names(names: dict[tuple[str, int], list[mappings.Mapping]]) -> list[str]:
    """One warning per name that does not resolve within RESOLVE_TIMEOUT, resolved off the event loop, in
    parallel, at most RESOLVE_MOST names."""
    loop = asyncio.get_running_loop()
    futs: dict[asyncio.Future[str | None], tuple[str, int]] = {}
    for host, port in list(names)[:RESOLVE_MOST]:
        fut: asyncio.Future[str | None] = loop.create_future()
        _resolve_in_thread(loop, fut, host, port)
        futs[fut] = (host, port)
    if not futs:
        return []
    await asyncio.wait(futs, timeout=RESOLVE_TIMEOUT)
    out = []
    for fut, (host, port) in futs.items():
        why = fut.result() if fut.done() else f"no answer within {RESOLVE_TIMEOUT:g} s"
        if why is not None:
            out.append(unresolved_line(host, names[(host, port)], why))
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


class MappingFiles:
    """The routing table now serving and how it got there (for /diag)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.table = routing.Table()
        self.loaded: mappings.LoadResult | None = None
        self.loaded_at = 0.0
        self.errors: list[str] = []  # of the last failed load; empty once one succeeds
        self.source = Source()
        self.running = False  # past start-up: errors no longer stop mitmdump
        self._signature: tuple[object, ...] | None = None
        self._installed_path: str | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._checked: set[tuple[str, int]] = set()  # service names already checked for resolving
        self._unchecked: dict[tuple[str, int], list[mappings.Mapping]] = {}
        self._checks: set[asyncio.Task[None]] = set()

    def load(self, source: Source, explicit: bool = False) -> bool:
        """Load now, on the calling thread (start-up, `--set`, the reload command). Returns success.

        At start-up an error is logged (mitmdump then exits with it, no traceback); an explicit `--set` later
        raises OptionsError (the option is rolled back); a file change keeps the last good table.
        """
        self.source = source
        return self._install(*read_mappings(source), explicit=explicit)

    def start(self) -> None:
        global _frozen
        self.running = True
        if not _frozen:
            # What start-up built (mitmproxy, the addon, the first table: 10,000 Mappings are ~120,000 objects) lives
            # as long as the process. Frozen, CPython's gen-2 collections, which pause the loop, no longer walk it;
            # a table replaced later is still freed (it holds no reference cycles, so its count drops to zero).
            _frozen = True
            gc.collect()
            gc.freeze()
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        self._check_names()

    def stop(self) -> None:
        self.running = False
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        for task in self._checks:
            task.cancel()
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

    def _install(
        self,
        signature: tuple[object, ...],
        result: mappings.LoadResult,
        table: routing.Table | None,
        explicit: bool = False,
        changed: tuple[routing.Table, str] | None = None,
    ) -> bool:
        """Install what `read_mappings` produced, on the event loop: one assignment of the routing table.
        `changed`: what the new table changes from an old one, worked out off the loop (used if that one is still
        installed)."""
        self._signature = signature
        errors = result.blocking(self.source.strict)
        if errors:
            return self._failed(errors, explicit)
        assert table is not None
        for n in result.notices:
            logger.info(n)
        for e in result.errors:  # invalid Mappings, left out as Emissary leaves them out (an error would end start-up)
            logger.warning(e)
        for ce in table.errors:
            logger.warning("Mapping %s: %s", ce.mapping, ce.message)
        for m in table.ignored:
            logger.info("Mapping %s: ignored: ambassador_id %s", m.key, ", ".join(m.ambassador_id))
        for w in self._warnings(table):
            logger.warning(w)
            result.notices.append(w)  # shown in /diag and on the dashboard too
        for w in explain.lonely_shadows(table):  # /diag lists them with the other traps
            logger.warning("mappings: %s", w)
        old, first = self.table, self._installed_path != self.source.path
        self._installed_path = self.source.path
        self.errors = []
        self.table = table  # one assignment: a request sees the old table or the new one, never a mix
        self.loaded, self.loaded_at = result, time.time()
        self.metrics.config_errors = len(table.errors)
        self.metrics.record_reload(True)
        names = names_to_resolve(table, self.source.overrides)
        self._unchecked = {k: v for k, v in names.items() if k not in self._checked}
        self._check_names()
        if self.source.path:
            n_shadow = sum(1 for g in table.groups if g.shadow)
            summary = (
                f"{plural(len(table.mappings), 'Mapping')} in {plural(len(table.groups), 'group')} "
                f"({n_shadow} with a shadow)"
            )
            if first:
                logger.info("mappings: %s from %s", summary, self.source.path)
            else:
                diff = changed[1] if changed is not None and changed[0] is old else changes(old, table)
                logger.info("mappings: reloaded %s: %s; now %s", self.source.path, diff, summary)
        return True

    def _warnings(self, table: routing.Table) -> list[str]:
        out = unknown_services(table, self.source.overrides) + explain.grpc_warnings(table)
        host = explain.host_notice(table, self.source.keep_host)
        return [*out, host] if host else out

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
        # Files are read and parsed in a thread (a large file must not stall traffic), one reload at a time, and
        # installed here on the loop. Nothing may end this task: hot reload would silently stop.
        interval = watch_interval()
        while True:
            await asyncio.sleep(interval)
            source = self.source
            if not source.path:
                continue
            try:
                if await asyncio.to_thread(files_signature, source.path) == self._signature:
                    continue
                loaded = await asyncio.to_thread(read_mappings, source)
                old, new = self.table, loaded[2]
                # Comparing two large tables takes as long as building one: also off the loop.
                changed = (old, await asyncio.to_thread(changes, old, new)) if new is not None else None
                if self.source is source:  # else `load` already installed a newer source
                    self._install(*loaded, changed=changed)
            except Exception as e:
                logger.error("mappings: reload of %s failed: %s: %s", source.path, type(e).__name__, e)
