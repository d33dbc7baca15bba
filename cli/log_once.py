"""One log line per origin failure: a filter that collapses repeats of the same cause.

An origin that cannot be reached fails every request that needs it: a mount listing a repo,
every chunk of every file being read, every probe. Logged as they happen, those failures
bury the one line that explains them; logged not at all, an ``Input/output error`` has no
explanation. :class:`RepeatFilter` sits on the log handlers (:func:`hoard.cli.runtime.setup_logging`
installs it) and lets the first record of each *cause* through, then drops the same cause
for ``window`` seconds; the first one after that passes with how many were dropped.

The cause of a record is the origin error it carries — an :class:`~hoard.store.errors.OriginError`
(``OriginUnavailable`` included) among its arguments or as its exception — named by its class
and its text, which the HTTP stack writes as ``<host> unreachable: <reason>`` or
``<host>: <reason>``. Digits are ignored in the comparison ("unreachable for 12s" and "... for
40s" are one cause). Records that carry no origin error are never filtered.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from hoard.store.errors import OriginError

__all__ = ["RepeatFilter", "WINDOW", "cause_of"]

#: seconds a cause stays quiet after it was logged ("for some minutes")
WINDOW = 300.0
#: causes remembered at most (the oldest is forgotten first)
_MAX_CAUSES = 1024
_DIGITS = re.compile(r"\d+")


def cause_of(record: logging.LogRecord) -> str | None:
    """The origin failure a record reports (its class and normalised text), or None."""
    candidates: list[object] = []
    if isinstance(record.args, tuple):
        candidates.extend(record.args)
    elif isinstance(record.args, dict):
        candidates.extend(record.args.values())
    if record.exc_info and record.exc_info[1] is not None:
        candidates.append(record.exc_info[1])
    candidates.append(record.msg)
    for item in candidates:
        if isinstance(item, OriginError):
            return f"{type(item).__name__}: {_DIGITS.sub('#', str(item))}"
    return None


@dataclass
class _Seen:
    logged_at: float
    dropped: int = 0


class RepeatFilter(logging.Filter):
    """Drop a record whose origin failure was logged less than ``window`` seconds ago."""

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        cause = cause_of(record)
        if cause is None:
            return True
        now = self.clock()
        with self._lock:
            seen = self._seen.get(cause)
            if seen is not None and now - seen.logged_at < self.window:
                seen.dropped += 1
                return False
            dropped = seen.dropped if seen is not None else 0
            self._seen[cause] = _Seen(now)
            self._seen.move_to_end(cause)
            while len(self._seen) > _MAX_CAUSES:
                self._seen.popitem(last=False)
        if dropped:
            minutes = self.window / 60
            record.msg = f"{record.msg} ({dropped} more like this in the last {minutes:g} min)"
        return True
