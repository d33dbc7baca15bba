"""Counters and gauges, rendered in the Prometheus text format at ``/metrics``.

Metric names are the constants below, in one place, so dashboards and code agree.
"""

from __future__ import annotations

import threading
from collections import defaultdict

__all__ = ["Metrics", "NAMES"]

HITS = "hoard_cache_hits_total"
MISSES = "hoard_cache_misses_total"
ORIGIN_BYTES = "hoard_origin_bytes_total"
STORED_BYTES = "hoard_stored_bytes_total"
CLIENT_BYTES = "hoard_client_bytes_total"
ORIGIN_REQUESTS = "hoard_origin_requests_total"
CHUNKS_FETCHED = "hoard_chunks_fetched_total"
INFLIGHT = "hoard_inflight_fetches"
PUBLISHED = "hoard_blobs_published_total"
ERRORS = "hoard_errors_total"
REQUESTS = "hoard_http_requests_total"

NAMES = {
    HITS: ("counter", "Files served entirely from the store."),
    MISSES: ("counter", "Files that needed bytes from the origin."),
    ORIGIN_BYTES: ("counter", "Bytes read from origins."),
    STORED_BYTES: ("counter", "Bytes of fetched chunks written to the store (counted once committed)."),
    CLIENT_BYTES: ("counter", "Bytes sent to clients (HTTP bodies)."),
    ORIGIN_REQUESTS: ("counter", "Range requests sent to origins."),
    CHUNKS_FETCHED: ("counter", "Chunks fetched from origins and stored."),
    INFLIGHT: ("gauge", "Chunk fetches in flight."),
    PUBLISHED: ("counter", "Blobs verified and published."),
    ERRORS: ("counter", "Errors by kind."),
    REQUESTS: ("counter", "HTTP requests served, by face and status."),
}


class Metrics:
    """Thread-safe counters with optional labels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)

    def inc(self, name: str, value: float = 1, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values[name]
            series[key] = series.get(key, 0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[name][key] = value

    def get(self, name: str, **labels: str) -> float:
        key = tuple(sorted(labels.items()))
        with self._lock:
            return self._values.get(name, {}).get(key, 0)

    def total(self, name: str) -> float:
        with self._lock:
            return sum(self._values.get(name, {}).values())

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, (kind, help_text) in NAMES.items():
                lines.append(f"# HELP {name} {help_text}")
                lines.append(f"# TYPE {name} {kind}")
                series = self._values.get(name) or {(): 0}
                for labels, value in sorted(series.items()):
                    label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                    text = str(int(value)) if float(value).is_integer() else repr(float(value))
                    lines.append(f"{name}{{{label_text}}} {text}" if label_text else f"{name} {text}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
