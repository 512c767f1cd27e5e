"""Prometheus metrics: process-wide counters, plus a collector that reads the
store at scrape time (so `/metrics` is right even when `aggregator poll` runs in
another process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aggregator.config import Config
from aggregator.storage import store

REGISTRY = CollectorRegistry(auto_describe=True)

POLL_SECONDS = Histogram(
    "aggregator_poll_duration_seconds",
    "Time to poll one feed (fetch, parse, store).",
    ["status"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "aggregator_http_requests",
    "HTTP requests served, by route and status.",
    ["route", "status"],
    registry=REGISTRY,
)


class StoreCollector(Collector):
    """Per-feed and per-topic gauges, read from the database on each scrape."""

    def __init__(self, config: Config, get_store: Callable[[], store.Store]) -> None:
        self.config = config
        self.get_store = get_store

    def collect(self) -> Iterator[Metric]:
        db = self.get_store()
        last_success = GaugeMetricFamily(
            "aggregator_feed_last_success_timestamp_seconds",
            "Unix time of the feed's last successful fetch (200 or 304).",
            labels=["feed"],
        )
        failures = GaugeMetricFamily(
            "aggregator_feed_consecutive_failures",
            "Failed fetches in a row.",
            labels=["feed"],
        )
        entries = GaugeMetricFamily(
            "aggregator_feed_entries", "Entries stored for the feed.", labels=["feed"]
        )
        merges = GaugeMetricFamily(
            "aggregator_feed_merged_entries",
            "Entries of the feed that joined another outlet's story.",
            labels=["feed"],
        )
        gone = GaugeMetricFamily(
            "aggregator_feed_gone", "1 if the feed answered 410 Gone.", labels=["feed"]
        )
        for s in db.feed_statuses():
            if s.last_success is not None:
                last_success.add_metric([s.name], s.last_success.timestamp())
            failures.add_metric([s.name], s.failures)
            entries.add_metric([s.name], s.entries)
            merges.add_metric([s.name], s.merges)
            gone.add_metric([s.name], int(s.gone))
        yield from (last_success, failures, entries, merges, gone)

        topic_entries = GaugeMetricFamily(
            "aggregator_topic_entries", "Stories in the topic.", labels=["topic"]
        )
        topic_newest = GaugeMetricFamily(
            "aggregator_topic_newest_entry_timestamp_seconds",
            "Unix time of the topic's newest story.",
            labels=["topic"],
        )
        for t in db.topic_summaries([(t.slug, t.title, t.query) for t in self.config.topics]):
            topic_entries.add_metric([t.slug], t.entries)
            if t.newest is not None:
                topic_newest.add_metric([t.slug], t.newest.timestamp())
        yield from (topic_entries, topic_newest)
        counts = db.counts()
        stories = GaugeMetricFamily("aggregator_stories", "Stories stored.")
        stories.add_metric([], counts["stories"])
        yield stories
