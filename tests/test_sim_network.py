"""The simulated network: a link's capacity shared by its transfers, and its records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from netbroker.sim.network import Links, fts_message, perfsonar_document

MB = 1_000_000
LINK = (0, 1)


def links(mbytes_per_s: float = 10.0, per_transfer: float = 100.0) -> Links:
    capacity = np.full((2, 2), mbytes_per_s)
    return Links(capacity, per_transfer)


def run(net: Links, starts: list[tuple[float, int, float]]) -> dict[int, float]:
    """Start the transfers (time, id, bytes) and return when each ends."""
    events: list[tuple[float, tuple[int, int], int]] = []
    ends: dict[int, float] = {}
    pending = sorted(starts)
    while pending or events:
        if pending and (not events or pending[0][0] <= min(events)[0]):
            t, tid, nbytes = pending.pop(0)
            ev = net.start(t, tid, LINK, nbytes)
        else:
            events.sort()
            t, link, version = events.pop(0)
            done, ev = net.due(t, link, version)
            ends.update((tid, t) for tid in done)
        if ev is not None:
            events.append(ev)
    return ends


def test_one_transfer_runs_at_the_link_capacity() -> None:
    assert run(links(), [(0.0, 1, 100 * MB)]) == {1: pytest.approx(10.0)}


def test_concurrent_transfers_share_the_capacity_equally() -> None:
    # Two of 100 MB at once on 10 MB/s: 5 MB/s each, both end at 20 s.
    ends = run(links(), [(0.0, 1, 100 * MB), (0.0, 2, 100 * MB)])
    assert ends == {1: pytest.approx(20.0), 2: pytest.approx(20.0)}


def test_a_late_transfer_slows_the_one_already_running() -> None:
    # 1 alone for 5 s (50 MB), then both at 5 MB/s: 1 needs 10 s more, ends at 15;
    # 2 has 50 MB by then and the link to itself: 5 s more, ends at 20.
    ends = run(links(), [(0.0, 1, 100 * MB), (5.0, 2, 100 * MB)])
    assert ends == {1: pytest.approx(15.0), 2: pytest.approx(20.0)}


def test_one_transfer_never_exceeds_its_own_ceiling() -> None:
    assert run(links(1000.0, per_transfer=50.0), [(0.0, 1, 100 * MB)]) == {
        1: pytest.approx(2.0)}


def test_a_cancelled_transfer_gives_its_share_back() -> None:
    net = links()
    net.start(0.0, 1, LINK, 100 * MB)
    net.start(0.0, 2, LINK, 100 * MB)
    t, link, version = net.cancel(4.0, 2)  # 20 MB each by then; 1 alone from now
    assert t == pytest.approx(12.0)  # the 80 MB left at 10 MB/s
    assert net.due(t, link, version)[0] == [1]


def test_congestion_takes_its_share_and_gives_it_back() -> None:
    net = links()
    net.start(0.0, 1, LINK, 100 * MB)
    net.congest(0.0, LINK, 0.5)  # 5 MB/s for the grid
    t, _link, _version = net.congest(10.0, LINK, 0.0)  # 50 MB done, 50 left at 10 MB/s
    assert t == pytest.approx(15.0)
    assert net.rate(LINK, extra=1) == pytest.approx(5 * MB)  # a probe now would share it


def test_a_stale_end_event_ends_nothing() -> None:
    net = links()
    _, link, old = net.start(0.0, 1, LINK, 100 * MB)
    net.start(1.0, 2, LINK, 100 * MB)  # the link changed: the first event is stale
    assert net.due(10.0, link, old) == ([], None)


def test_the_records_are_in_the_sources_formats() -> None:
    fts = json.loads(fts_message(3, "A_DATADISK", "B_DATADISK", 1000.0, 1020.5, 2 * 10**9))
    assert (fts["timestamp_tr_st"], fts["timestamp_tr_comp"], fts["tr_bt_transfered"]) == (
        1_000_000, 1_020_500, 2 * 10**9)
    loss = json.loads(perfsonar_document("T1-X", "T2-Y", 60.0, packet_loss=0.02))
    assert loss == {"src_host": "ps.t1-x.sim", "dest_host": "ps.t2-y.sim", "timestamp": 60000,
                    "packet_loss": 0.02}


def test_a_rest_shorter_than_the_clocks_resolution_still_ends() -> None:
    """At t = 1e8 s a double resolves 15 ns; a byte at 1,000 MB/s takes 1 ns. The end
    must still come (it once came back at the same instant forever)."""
    net = links(mbytes_per_s=1000.0, per_transfer=1000.0)
    ev = net.start(1e8, 1, LINK, 1.0)
    assert ev is not None and ev[0] > 1e8  # the clock moves on
    steps = 0
    while True:
        steps += 1
        assert steps <= 2, "the transfer never ended"
        done, ev = net.due(ev[0], ev[1], ev[2])
        if done:
            break
        assert ev is not None
    assert done == [1] and ev is None
