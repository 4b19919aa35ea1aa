"""Prometheus HTTP API: instant queries and long range queries cut into chunks."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

# Prometheus refuses a range query of more than 11,000 points per series.
MAX_POINTS_PER_QUERY = 10_000
CHUNK_POINTS = 240  # points per series fetched per request: progress moves, memory stays low


class PrometheusError(RuntimeError):
    pass


class Prometheus:
    def __init__(self, url: str, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict[str, str]) -> Any:
        address = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(address, timeout=self.timeout) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise PrometheusError(f"{self.url}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise PrometheusError(
                f"{self.url}: cannot query Prometheus ({exc}); check --prometheus.url"
            ) from None
        if body.get("status") != "success":
            raise PrometheusError(f"{self.url}: {body.get('error', body)}")
        return body["data"]["result"]

    def query(self, promql: str, at: float) -> list[dict[str, Any]]:
        return self._get("/api/v1/query", {"query": promql, "time": f"{at:.3f}"})

    def query_range(
        self,
        promql: str,
        start: float,
        end: float,
        step: float,
        on_chunk: Callable[[], None] = lambda: None,
    ) -> dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]:
        """Samples at start, start+step, ... <= end, by label set, fetched in chunks."""
        series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        for chunk_start, chunk_end in chunks(start, end, step):
            result = self._get(
                "/api/v1/query_range",
                {
                    "query": promql,
                    "start": f"{chunk_start:.3f}",
                    "end": f"{chunk_end:.3f}",
                    "step": f"{step:g}",
                },
            )
            for item in result:
                key = tuple(sorted(item["metric"].items()))
                series.setdefault(key, []).extend((float(t), float(v)) for t, v in item["values"])
            on_chunk()
        return series


def chunks(start: float, end: float, step: float) -> list[tuple[float, float]]:
    """[start, end] on the step grid, cut into pieces of CHUNK_POINTS points."""
    total = math.floor((end - start) / step + 1e-9) + 1
    pieces = []
    for first in range(0, total, CHUNK_POINTS):
        last = min(first + CHUNK_POINTS, total) - 1
        pieces.append((start + first * step, start + last * step))
    return pieces


def chunk_count(start: float, end: float, step: float) -> int:
    return len(chunks(start, end, step))
