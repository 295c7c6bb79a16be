"""The Mapping-file watcher in-process: a change is installed, a bad one keeps the last good table."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from support import mapping, write_mappings

from shadow_addon import mappingfiles
from shadow_addon.mappingfiles import MappingFiles, Source
from shadow_addon.metrics import Metrics


@pytest.mark.parametrize(
    ("value", "interval"),
    [(None, 1.0), ("0.05", 0.05), ("2", 2.0), ("soon", 1.0), ("0", 1.0), ("-1", 1.0), ("nan", 1.0), ("1e9", 1.0)],
)
def test_the_watch_interval_comes_from_the_environment_within_bounds(
    monkeypatch: pytest.MonkeyPatch, value: str | None, interval: float
) -> None:
    if value is None:
        monkeypatch.delenv(mappingfiles.WATCH_INTERVAL_ENV, raising=False)
    else:
        monkeypatch.setenv(mappingfiles.WATCH_INTERVAL_ENV, value)
    assert mappingfiles.watch_interval() == interval


async def until(cond: Callable[[], bool]) -> bool:
    for _ in range(500):  # bounded: 5 s
        if cond():
            return True
        await asyncio.sleep(0.01)
    return cond()


async def test_a_changed_file_is_installed_and_a_broken_one_keeps_the_last_good_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mappingfiles, "_frozen", True)  # gc.freeze is mitmdump's start-up, not the test process's
    monkeypatch.setenv(mappingfiles.WATCH_INTERVAL_ENV, "0.01")
    m = write_mappings(tmp_path / "m.yaml", mapping("a", prefix="/a/", service="127.0.0.1:9"))
    metrics = Metrics()
    files = MappingFiles(metrics)
    assert files.load(Source(path=str(m)))
    files.start()
    try:

        def labels() -> list[str]:
            return [g.label for g in files.table.groups]

        assert labels() == ["/a/"]
        write_mappings(m, mapping("a", prefix="/b/", service="127.0.0.1:9"))
        assert await until(lambda: labels() == ["/b/"]), labels()
        m.write_text("kind: [")
        assert await until(lambda: metrics.reloads.get("failure", 0) == 1), metrics.reloads
        assert labels() == ["/b/"] and files.errors and "YAML syntax error" in files.errors[0]
        write_mappings(m, mapping("c", prefix="/c/", service="127.0.0.1:9"))  # fixed: installed again
        assert await until(lambda: labels() == ["/c/"]), labels()
        assert files.errors == [] and metrics.reloads == {"success": 3, "failure": 1}
    finally:
        files.stop()
