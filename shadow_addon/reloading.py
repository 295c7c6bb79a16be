"""When the addon loads its Mapping files: before the proxy serves, at once; once it serves, off the event loop,
the last good table serving meanwhile. A failed load of a changed option puts the options back to the values of
the table serving, so mitmproxy's option view stays true."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mitmproxy import ctx

from . import settings
from .mappingfiles import MappingFiles, Source

logger = logging.getLogger("shadow")


def option_values(o: Any) -> dict[str, Any]:
    """The values of the options a table is loaded from (those whose change reloads the Mapping files)."""
    return {opt.name: getattr(o, opt.name) for opt in settings.OPTIONS if settings.RELOAD <= opt.triggers}


class Reloading:
    def __init__(self, files: MappingFiles) -> None:
        self.files = files
        self.table_options: dict[str, Any] = {}  # the reload options' values the serving table was loaded with
        self.restoring = False  # putting those back after a failed run-time load: no load again

    def load(self, source: Source, explicit: bool) -> bool | None:
        """Before the proxy serves, load now (True on success; an error is logged and mitmdump exits). Once it
        serves, off the event loop (returns None): a failure is logged and counted, and, for a changed option
        (`explicit`), the options are put back."""
        values = option_values(ctx.options)
        if self.serving():
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # configured from outside the event loop: nothing to keep serving meanwhile
                pass
            else:
                self.files.request(source, lambda ok: self._loaded(ok, values, explicit))
                return None
        ok = self.files.load(source, explicit=explicit)
        if ok:
            self.table_options = values
        return ok

    def serving(self) -> bool:
        """Whether the proxy serves: from mitmproxy's proxyserver `running` on (also when the addon is loaded
        again by `-s` hot reload, whose first `configure` comes while the proxy serves)."""
        ps = ctx.master.addons.get("proxyserver")
        return self.files.running or bool(getattr(ps, "is_running", False))

    def _loaded(self, ok: bool, values: dict[str, Any], explicit: bool) -> None:
        """A run-time load is over: remember its option values, or put the serving table's back."""
        if ok:
            self.table_options = values
            return
        back = {k: v for k, v in self.table_options.items() if getattr(ctx.options, k) != v}
        if not explicit or not back:
            return
        self.restoring = True
        try:
            ctx.options.update(**back)
            logger.info("mappings: options put back to the configuration serving: %s", ", ".join(sorted(back)))
        except Exception as e:  # another addon refused the old value: the option view is left as it is
            logger.error("mappings: could not put back %s: %s", ", ".join(sorted(back)), e)
        finally:
            self.restoring = False
