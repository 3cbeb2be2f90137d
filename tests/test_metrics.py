"""Process counters: live connections counted as they go, folded into the totals when they end."""

from __future__ import annotations

import pytest

from wsgi_ws import metrics

pytestmark = pytest.mark.unit


class Counted:
    def __init__(self) -> None:
        self.messages_received = self.messages_sent = self.bytes_received = self.bytes_sent = 0


def test_live_connections_count_until_closed_then_stay_in_the_totals() -> None:
    before = metrics.snapshot()
    connection = Counted()
    metrics.opened(connection)
    connection.messages_received, connection.bytes_received = 2, 10
    live = metrics.snapshot()
    assert live["open"] == before["open"] + 1 and live["accepted"] == before["accepted"] + 1
    assert live["messages_in"] == before["messages_in"] + 2 and live["bytes_in"] == before["bytes_in"] + 10
    connection.messages_sent = 1
    metrics.closed(connection)
    metrics.closed(connection)  # a second close counts nothing twice
    after = metrics.snapshot()
    assert after["open"] == before["open"] and after["closed"] == before["closed"] + 1
    assert (after["messages_in"], after["messages_out"]) == (before["messages_in"] + 2, before["messages_out"] + 1)


def test_refusals_are_counted() -> None:
    before = metrics.snapshot()["refused"]
    metrics.refused()
    assert metrics.snapshot()["refused"] == before + 1


def test_a_source_that_counts_for_itself_joins_the_snapshot() -> None:
    counts = {"hub_delivered": 0}
    metrics.add_source(lambda: counts)
    counts["hub_delivered"] = 7
    assert metrics.snapshot()["hub_delivered"] == 7, "read at snapshot time, not when added"
