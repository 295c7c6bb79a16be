"""The report file: one JSON line per mismatch appended, rotated at its cap so it takes a bounded space on disk."""

from __future__ import annotations

import logging
import os
from typing import IO

logger = logging.getLogger(__name__)


class ReportFile:
    """Opened once (raising OSError if it cannot be); a line per mismatch is appended (small, and only on
    mismatches). Past `cap` bytes (0: unbounded) the file is moved to `<path>.1` (replacing the one before) and a
    new one begun, so the report takes at most twice `cap` on disk. A write that fails disables the report."""

    def __init__(self, path: str, cap: int) -> None:
        self.path = path
        self.cap = cap
        self._file: IO[str] | None = open(path, "a", encoding="utf-8")  # noqa: SIM115
        self._size = self._file.tell()

    def write(self, line: str) -> None:
        if self._file is None:
            return
        size = len(line.encode("utf-8"))
        try:
            if self.cap and self._size + size > self.cap and self._size:
                self._file.close()
                os.replace(self.path, self.path + ".1")
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
                self._size = 0
            self._file.write(line)
            self._file.flush()
            self._size += size
        except OSError as e:
            logger.warning("shadow_compare_report: cannot write %s: %s; report disabled", self.path, e)
            self._file = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
