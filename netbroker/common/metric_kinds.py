"""The vocabulary of network metrics: where a sample came from, what it measures, its unit.

Apart from ``netbroker.network.metrics`` (windows, consolidation, the matrix) so
that the collectors, which need only these words, import without pandas:
a parsing process (``collectors.parsing``) starts in a fraction of the time.
``netbroker.network.metrics`` re-exports all three names.
"""

from __future__ import annotations

import enum

__all__ = ["KIND_UNITS", "MetricKind", "MetricSource"]


class MetricSource(enum.StrEnum):
    """Where a measurement came from."""

    FTS = "fts"
    PERFSONAR = "perfsonar"
    XROOTD = "xrootd"
    NWS = "nws"


class MetricKind(enum.StrEnum):
    """What a sample measures; its unit is ``KIND_UNITS[kind]``."""

    THROUGHPUT = "throughput"    # MB/s (10**6 bytes per second), src -> dst
    PACKET_LOSS = "packet_loss"  # fraction 0..1
    OWD = "owd"                  # one-way delay, median, ms
    RTT = "rtt"                  # round-trip time, median, ms
    SUCCESS = "success"          # 1.0 a transfer/read succeeded, 0.0 it failed


KIND_UNITS = {
    MetricKind.THROUGHPUT: "MB/s",
    MetricKind.PACKET_LOSS: "fraction",
    MetricKind.OWD: "ms",
    MetricKind.RTT: "ms",
    MetricKind.SUCCESS: "fraction",
}
