"""Request counts, latency histograms and gauges in the Prometheus text format (version 0.0.4).

A few counters do not justify a client library: the format is plain text, and the service keeps
one process, so there is nothing to aggregate across workers.
"""
from __future__ import annotations

import bisect
import threading
from typing import Callable, Dict, List, Tuple

#: Latency buckets (seconds): a batch-1 read is ~10-30 ms on 2 cores, a full batch ~150 ms.
BUCKETS: Tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Thread-safe counters; gauges are callables read at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Dict[Tuple[str, str, str], int] = {}
        self.latency: Dict[Tuple[str, str], List[float]] = {}   # bucket counts + [sum, count]
        self.images_read = 0
        self.gauges: Dict[str, Tuple[str, str, Callable[[], float]]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, route, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1
            hist = self.latency.setdefault((method, route), [0.0] * (len(BUCKETS) + 2))
            hist[bisect.bisect_left(BUCKETS, seconds)] += 1   # index len(BUCKETS) is +Inf only
            hist[-2] += seconds
            hist[-1] += 1

    def count_images(self, n: int) -> None:
        with self._lock:
            self.images_read += n

    def gauge(self, name: str, help_text: str, read: Callable[[], float],
              kind: str = "gauge") -> None:
        """A value read at scrape time; ``kind`` ``counter`` for one that only grows."""
        self.gauges[name] = (kind, help_text, read)

    def render(self) -> str:
        with self._lock:
            requests = dict(self.requests)
            latency = {k: list(v) for k, v in self.latency.items()}
            images = self.images_read
        out = ["# HELP vinocr_http_requests_total HTTP requests by method, route and status.",
               "# TYPE vinocr_http_requests_total counter"]
        for (method, route, status), n in sorted(requests.items()):
            out.append(f'vinocr_http_requests_total{{method="{_label(method)}",'
                       f'route="{_label(route)}",status="{status}"}} {n}')
        out += ["# HELP vinocr_http_request_duration_seconds HTTP request latency.",
                "# TYPE vinocr_http_request_duration_seconds histogram"]
        for (method, route), hist in sorted(latency.items()):
            labels = f'method="{_label(method)}",route="{_label(route)}"'
            cumulative = 0.0
            for bound, n in zip(BUCKETS, hist):
                cumulative += n
                out.append(f'vinocr_http_request_duration_seconds_bucket{{{labels},le="{bound}"}}'
                           f" {int(cumulative)}")
            out.append(f'vinocr_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} '
                       f"{int(hist[-1])}")
            out.append(f"vinocr_http_request_duration_seconds_sum{{{labels}}} {hist[-2]:.6f}")
            out.append(f"vinocr_http_request_duration_seconds_count{{{labels}}} {int(hist[-1])}")
        out += ["# HELP vinocr_images_read_total Images recognised.",
                "# TYPE vinocr_images_read_total counter", f"vinocr_images_read_total {images}"]
        for name, (kind, help_text, read) in sorted(self.gauges.items()):
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {read():g}"]
        return "\n".join(out) + "\n"
