"""The simulated network: links whose capacity concurrent transfers share, and the
records its sources would publish about it.

A link ``(src, dst)`` has a capacity (MB/s, less the share that unseen
traffic takes while it is congested); the transfers on it share it equally,
each at most ``per_transfer_mbytes_per_s`` (processor sharing, as TCP
streams on one bottleneck roughly do). :class:`Links` keeps, per link, the
bytes every one of its transfers has received since the link came into use
(they all receive the same), so a transfer's end is a threshold on that one
number: starting, ending or cancelling a transfer, or a change of capacity,
costs O(log t) for t transfers on the link, and only the link's next end is
an event.

What the service reads about the network is what its sources say:
:func:`fts_message` is FTS's transfer-complete message for a finished
transfer (its real bytes and duration, the setup included), and
:func:`perfsonar_document` is a perfSONAR result as WLCG's ps_* indices
keep it (a probe's throughput or packet loss, with noise).
"""

from __future__ import annotations

import heapq
import json
import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Links", "fts_message", "perfsonar_document"]

MB = 1_000_000


@dataclass
class _Link:
    capacity: float                 # MB/s before congestion
    share_taken: float = 0.0        # by traffic the grid does not see
    served: float = 0.0             # bytes each transfer on the link has received
    at: float = 0.0                 # when ``served`` was last brought up to date
    active: int = 0
    heap: list[tuple[float, int]] = field(default_factory=list)  # (served at the end, id)
    version: int = 0


class Links:
    """Transfers sharing their links' capacity; see the module docstring.

    The caller owns the clock and the event queue: every method that changes a
    link returns ``(time, link, version)`` for that link's next end, or None;
    :meth:`due` takes such an event back and returns the transfers it ends
    (none when the event is stale: the link changed since).
    """

    def __init__(self, capacity: np.ndarray, per_transfer_mbytes_per_s: float) -> None:
        self.capacity = capacity
        self.per_transfer = per_transfer_mbytes_per_s * MB
        self.links: dict[tuple[int, int], _Link] = {}
        self.where: dict[int, tuple[tuple[int, int], float]] = {}  # id -> (link, end served)
        self.cancelled: set[int] = set()

    def rate(self, link: tuple[int, int], extra: int = 0) -> float:
        """Bytes/s each transfer on the link gets (with ``extra`` more transfers)."""
        state = self._link(link)
        n = state.active + extra
        free = state.capacity * MB * (1 - state.share_taken)
        return min(self.per_transfer, free / max(n, 1))

    def start(self, now: float, tid: int, link: tuple[int, int], nbytes: float
              ) -> tuple[float, tuple[int, int], int] | None:
        state = self._advance(now, link)
        end = state.served + max(nbytes, 1.0)
        heapq.heappush(state.heap, (end, tid))
        self.where[tid] = (link, end)
        state.active += 1
        return self._next(link)

    def cancel(self, now: float, tid: int) -> tuple[float, tuple[int, int], int] | None:
        """Stop a transfer (its job moved away); its share goes to the others."""
        if tid not in self.where:
            return None
        link, _ = self.where.pop(tid)
        self._advance(now, link).active -= 1
        self.cancelled.add(tid)
        return self._next(link)

    def congest(self, now: float, link: tuple[int, int], share: float
                ) -> tuple[float, tuple[int, int], int] | None:
        self._advance(now, link).share_taken = share
        return self._next(link)

    def set_capacity(self, now: float, link: tuple[int, int], mbytes_per_s: float
                     ) -> tuple[float, tuple[int, int], int] | None:
        self._advance(now, link).capacity = mbytes_per_s
        return self._next(link)

    def due(self, now: float, link: tuple[int, int], version: int
            ) -> tuple[list[int], tuple[float, tuple[int, int], int] | None]:
        """The transfers ending now on ``link`` (none if the event is stale), and the
        link's next end."""
        state = self.links[link]
        if version != state.version:
            return [], None
        self._advance(now, link)
        # Ended: within rounding of the bytes served, or of what the link serves in the
        # clock's resolution at ``now`` (a smaller rest could never be reached: its end
        # time would equal ``now`` again and again).
        limit = state.served + max(state.served * 1e-12 + 1e-6,
                                   4 * math.ulp(now) * self.rate(link))
        done = []
        while state.heap and state.heap[0][0] <= limit:
            _, tid = heapq.heappop(state.heap)
            if tid in self.cancelled:
                self.cancelled.discard(tid)
                continue
            self.where.pop(tid, None)
            state.active -= 1
            done.append(tid)
        return done, self._next(link)

    def _link(self, link: tuple[int, int]) -> _Link:
        state = self.links.get(link)
        if state is None:
            state = self.links[link] = _Link(float(self.capacity[link]))
        return state

    def _advance(self, now: float, link: tuple[int, int]) -> _Link:
        state = self._link(link)
        if state.active:
            state.served += (now - state.at) * self.rate(link)
        state.at = now
        return state

    def _next(self, link: tuple[int, int]) -> tuple[float, tuple[int, int], int] | None:
        state = self.links[link]
        state.version += 1
        while state.heap and state.heap[0][1] in self.cancelled:
            self.cancelled.discard(heapq.heappop(state.heap)[1])
        if not state.heap or not state.active:
            return None
        left = max(state.heap[0][0] - state.served, 0.0)
        # Never at the same instant again: the clock moves on by at least its resolution.
        end = max(state.at + left / self.rate(link), math.nextafter(state.at, math.inf))
        return end, link, state.version


def fts_message(tid: int, src_rse: str, dst_rse: str, start_s: float, end_s: float,
                nbytes: int) -> str:
    """FTS's transfer-complete message for a finished transfer (JSON, one line).

    >>> m = json.loads(fts_message(7, "A_DATADISK", "B_DATADISK", 100.0, 110.0, 10**9))
    >>> m["file_metadata"], m["timestamp_tr_comp"] - m["timestamp_tr_st"], m["file_size"]
    ({'src_rse': 'A_DATADISK', 'dst_rse': 'B_DATADISK'}, 10000, 1000000000)
    """
    return json.dumps({
        "tr_id": f"sim-{tid}", "vo": "atlas", "endpnt": "fts3.sim",
        "src_se": "davs://src.sim", "dst_se": "davs://dst.sim", "t_final_transfer_state": "Ok",
        "file_metadata": {"src_rse": src_rse, "dst_rse": dst_rse},
        "timestamp_tr_st": int(start_s * 1000), "timestamp_tr_comp": int(end_s * 1000),
        "file_size": nbytes, "tr_bt_transfered": nbytes, "throughput": -1})


def perfsonar_document(src: str, dst: str, at_s: float, *, mbytes_per_s: float | None = None,
                       packet_loss: float | None = None) -> str:
    """One perfSONAR result between two sites' hosts, as WLCG's ps_* documents hold it.

    >>> json.loads(perfsonar_document("A", "B", 60.0, mbytes_per_s=10.0))["throughput"]
    80000000.0
    """
    doc: dict[str, object] = {"src_host": f"ps.{src.lower()}.sim",
                              "dest_host": f"ps.{dst.lower()}.sim", "timestamp": int(at_s * 1000)}
    if mbytes_per_s is not None:
        doc["throughput"] = mbytes_per_s * 8e6
    else:
        doc["packet_loss"] = packet_loss
    return json.dumps(doc)
