"""What the host counts while it runs, and its Prometheus exposition (``GET /metrics``).

The host, the delivery queues and the database writers keep plain counters (a dict
increment on the hot path, nothing more); `render(host)` reads them, and the state of every
plug, queue and writer, when Prometheus scrapes, and writes them with prometheus-client's
exposition code. Metric names (all ``chanmux_``):

- ``messages_received_total{plug,channel}``: messages a network gave (not our own echoes)
- ``messages_relayed_total{plug,channel,kind}``: puts, edits and deletes a plug accepted
- ``put_failures_total{plug,reason}``: puts that raised (timeout, connection, refused, ...)
- ``plug_up{plug}``, ``plug_state{plug,state}``, ``plug_state_since_seconds{plug}``,
  ``plug_connections_total{plug}`` (a connection after the first is a reconnect)
- ``delivery_queue_depth{hook,target}``, ``delivery_queue_oldest_age_seconds{hook,target}``,
  ``delivery_queue_waiting{hook,target}`` (1 while copies wait for the target),
  ``deliveries_total{hook,target,outcome}`` (delivered, dropped, gave_up)
- ``db_batch_rows{writer}`` and ``db_batch_seconds{writer}`` (histograms),
  ``db_pending_rows{writer}``, ``db_write_failures_total{writer}``
- ``event_loop_lag_seconds`` (histogram), ``event_loop_blocked_total``
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .host import Host

#: Buckets (seconds) for latencies.
SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Buckets (rows) for database batch sizes.
ROWS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)


class Histogram:
    """Counts of observed values at or below each bucket, their sum and number."""

    __slots__ = ("buckets", "counts", "sum", "count")

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip(self.buckets, self.counts, strict=True):
            total += count
            out.append((_bound(bound), total))
        out.append(("+Inf", self.count))
        return out


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


class Traffic:
    """One channel's counts: messages received from it, copies relayed to it by kind (put,
    edit, delete), and when each last happened (Unix time, or None). The host keeps one per
    channel and adds to it on every message: attribute and plain-dict increments, cheaper
    than a Counter keyed by a tuple made each time (2.5 µs of a relayed message's CPU)."""

    __slots__ = ("plug", "label", "received", "relayed", "last_received", "last_relayed")

    def __init__(self, plug: str, label: str) -> None:
        self.plug = plug
        self.label = label
        self.received = 0
        self.relayed: dict[str, int] = {"put": 0, "edit": 0, "delete": 0}
        self.last_received: float | None = None
        self.last_relayed: float | None = None


class Metrics:
    """The host's counters (see the module's docstring for what each becomes)."""

    def __init__(self) -> None:
        self.started = time.time()
        #: per channel (see `Traffic`); `received` and `relayed` sum them by label
        self.traffic: dict[Any, Traffic] = {}
        self.put_failures: Counter[tuple[str, str]] = Counter()
        self.loop_lag = Histogram(SECONDS)

    @property
    def received(self) -> Counter[tuple[str, str]]:
        """Messages received, by (plug, channel label)."""
        counts: Counter[tuple[str, str]] = Counter()
        for t in self.traffic.values():
            if t.received:
                counts[t.plug, t.label] += t.received
        return counts

    @property
    def relayed(self) -> Counter[tuple[str, str, str]]:
        """Copies relayed, by (plug, channel label, kind)."""
        counts: Counter[tuple[str, str, str]] = Counter()
        for t in self.traffic.values():
            for kind, count in t.relayed.items():
                if count:
                    counts[t.plug, t.label, kind] += count
        return counts

    def observe_lag(self, lag: float) -> None:
        self.loop_lag.observe(lag)


def failure_reason(exc: BaseException) -> str:
    """A short, bounded word for why a put failed (a label value, so never free text)."""
    from .errors import ActionRequired, Refused, TryLater

    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, TryLater):
        return "try_later"
    if isinstance(exc, Refused):
        return "refused"
    if isinstance(exc, ActionRequired):
        return "action_required"
    if isinstance(exc, (ConnectionError, OSError)):
        return "connection"
    return "error"


def _families(host: Host) -> Iterator[Any]:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        InfoMetricFamily,
    )

    from ._version import __version__

    m = host.metrics
    yield InfoMetricFamily("chanmux", "the chanmux core running", value={"version": __version__})
    up = GaugeMetricFamily("chanmux_up", "1 while the host runs (relays)")
    up.add_metric([], 1.0 if host.running else 0.0)
    yield up
    started = GaugeMetricFamily("chanmux_start_time_seconds", "when the host started (Unix time)")
    started.add_metric([], m.started)
    yield started

    received = CounterMetricFamily("chanmux_messages_received", "messages received from a network",
                                   labels=["plug", "channel"])
    for (plug, label), count in sorted(m.received.items()):
        received.add_metric([plug, label], count)
    yield received
    relayed = CounterMetricFamily("chanmux_messages_relayed", "puts, edits and deletes a plug took",
                                  labels=["plug", "channel", "kind"])
    for (plug, label, kind), count in sorted(m.relayed.items()):
        relayed.add_metric([plug, label, kind], count)
    yield relayed
    failures = CounterMetricFamily("chanmux_put_failures", "puts, edits and deletes that failed",
                                   labels=["plug", "reason"])
    for (plug, reason), count in sorted(m.put_failures.items()):
        failures.add_metric([plug, reason], count)
    yield failures

    plug_up = GaugeMetricFamily("chanmux_plug_up", "1 while the plug is connected", labels=["plug"])
    state = GaugeMetricFamily("chanmux_plug_state", "1 for the state the plug is in",
                              labels=["plug", "state"])
    since = GaugeMetricFamily("chanmux_plug_state_since_seconds", "when the plug entered its state",
                              labels=["plug"])
    connections = CounterMetricFamily("chanmux_plug_connections",
                                      "times the plug connected (after the first: reconnects)",
                                      labels=["plug"])
    for name in sorted(host.plugs):
        word = host.plug_state(name)
        plug_up.add_metric([name], 1.0 if host.plug_ready(name) else 0.0)
        state.add_metric([name, word], 1.0)
        since.add_metric([name], host.plug_since(name))
        connections.add_metric([name], host.plug_connection(name))
    yield from (plug_up, state, since, connections)

    depth = GaugeMetricFamily("chanmux_delivery_queue_depth", "copies waiting to be delivered",
                              labels=["hook", "target"])
    oldest = GaugeMetricFamily("chanmux_delivery_queue_oldest_age_seconds",
                               "age of the oldest copy waiting (0 when none)", labels=["hook", "target"])
    waiting = GaugeMetricFamily("chanmux_delivery_queue_waiting",
                                "1 while copies wait because the target is down or failing",
                                labels=["hook", "target"])
    outcomes = CounterMetricFamily("chanmux_deliveries", "copies done with, by outcome",
                                   labels=["hook", "target", "outcome"])
    now = time.time()
    for queues in host.delivery_queues:
        for channel, queue in queues.items():
            target = host.channel_label(channel)
            labels = [queues.owner, target]
            depth.add_metric(labels, len(queue))
            first = next(iter(queue), None)
            oldest.add_metric(labels, max(0.0, now - first.since) if first is not None else 0.0)
            waiting.add_metric(labels, 1.0 if queue.down else 0.0)
            outcomes.add_metric([*labels, "delivered"], queue.delivered)
            outcomes.add_metric([*labels, "dropped"], queue.dropped)
            outcomes.add_metric([*labels, "gave_up"], queue.failed)
    yield from (depth, oldest, waiting, outcomes)

    rows = HistogramMetricFamily("chanmux_db_batch_rows", "rows per database write batch",
                                 labels=["writer"])
    seconds = HistogramMetricFamily("chanmux_db_batch_seconds", "time to write one batch",
                                    labels=["writer"])
    pending = GaugeMetricFamily("chanmux_db_pending_rows", "rows waiting to be written",
                                labels=["writer"])
    write_failures = CounterMetricFamily("chanmux_db_write_failures", "batches that failed to write",
                                         labels=["writer"])
    for writer in host.store.writers:
        rows.add_metric([writer.name], writer.batch_rows.cumulative(), writer.batch_rows.sum)
        seconds.add_metric([writer.name], writer.batch_seconds.cumulative(), writer.batch_seconds.sum)
        pending.add_metric([writer.name], writer.pending)
        write_failures.add_metric([writer.name], writer.failures)
    yield from (rows, seconds, pending, write_failures)

    lag = HistogramMetricFamily("chanmux_event_loop_lag_seconds",
                                "how late the event loop ran the watchdog's tick")
    lag.add_metric([], m.loop_lag.cumulative(), m.loop_lag.sum)
    yield lag
    blocked = CounterMetricFamily("chanmux_event_loop_blocked",
                                  "times the event loop was held past [host] loop_block_warning")
    blocked.add_metric([], host.watchdog.blocked if host.watchdog is not None else 0)
    yield blocked


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render(host: Host) -> bytes:
    """The Prometheus text exposition of everything the host counts, as of now."""
    from prometheus_client import CollectorRegistry, generate_latest

    class _Collector:
        def collect(self) -> Iterator[Any]:
            return _families(host)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry)
