"""Prometheus metrics of one gateway, served on REST /metrics.

`itk_chunks_pending` is what the generator autoscaler follows: chunks cut by the splitter that
wait for a generator slot. Gauges that mirror state (jobs by status, endpoints) are read at
scrape time, so they cannot drift from the store and the pools.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ChunkGauges:
    """Counts of chunks waiting for and running on generators, across all jobs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pending = 0
        self.running = 0

    def add_pending(self, delta: int) -> None:
        with self._lock:
            self.pending += delta

    def add_running(self, delta: int) -> None:
        with self._lock:
            self.running += delta


class _StateCollector(Collector):
    def __init__(self, chunks: ChunkGauges, job_counts: Callable[[], dict[str, int]],
                 endpoint_counts: Callable[[], dict[str, int]]) -> None:
        self.chunks = chunks
        self.job_counts = job_counts
        self.endpoint_counts = endpoint_counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("itk_chunks_pending", "Chunks waiting for a generator slot",
                                value=self.chunks.pending)
        yield GaugeMetricFamily("itk_chunks_running", "Chunks being generated now", value=self.chunks.running)
        jobs = GaugeMetricFamily("itk_jobs", "Jobs by status", labels=["status"])
        for status, count in self.job_counts().items():
            jobs.add_metric([status], count)
        yield jobs
        endpoints = GaugeMetricFamily("itk_generator_endpoints", "Generator endpoints", labels=["state"])
        counts = self.endpoint_counts()
        endpoints.add_metric(["known"], counts.get("known", 0))
        endpoints.add_metric(["ready"], counts.get("ready", 0))
        yield endpoints


class GatewayMetrics:
    def __init__(self, job_counts: Callable[[], dict[str, int]],
                 endpoint_counts: Callable[[], dict[str, int]]) -> None:
        # A registry per gateway, so several gateways can live in one test process.
        self.registry = CollectorRegistry()
        self.chunks = ChunkGauges()
        self.jobs_total = Counter("itk_jobs_total", "Jobs accepted", registry=self.registry)
        self.chunk_seconds = Histogram(
            "itk_chunk_seconds", "Wall time of one successful chunk generation",
            # Up to two hours: a 45 s chunk at the `quality` preset takes over an hour and a half on an H100.
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 2400, 3600, 5400, 7200, float("inf")),
            registry=self.registry,
        )
        self.registry.register(_StateCollector(self.chunks, job_counts, endpoint_counts))

    def render(self) -> bytes:
        return generate_latest(self.registry)
